/** The client's API calls against a live Countersign: ask, read, wait, cancel, list, errors. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  ApprovalTimeout,
  AuthenticationError,
  Conflict,
  CountersignError,
  InvalidRequest,
  NotFound,
  approvalOutcome,
  type Decision,
} from "countersign";

import { aliceAnswers, client, later, live, runId, liveSuite } from "./live.js";

describe("asking and reading back", liveSuite, () => {
  test("create answers with a pending decision that get reads back", async () => {
    const agent = client();
    const asked = await agent.create({
      action: "Refund $120 to order #1042",
      context: "The parcel arrived damaged.",
      details: { amount: 120, customer: "Ada" },
      approver: live.approver,
      urgency: "high",
      timeout_minutes: 30,
      metadata: { thread_id: "refund-1042" },
    });

    assert.match(asked.id, /^dec_/);
    assert.equal(asked.status, "pending");
    assert.equal(asked.outcome, null);
    assert.deepEqual(asked.details, { amount: 120, customer: "Ada" });
    assert.deepEqual(asked.options, ["approve", "deny"]);
    assert.equal(asked.urgency, "high");
    assert.deepEqual(asked.metadata, { thread_id: "refund-1042" });
    assert.match(asked.action_hash, /^[0-9a-f]{64}$/);
    assert.deepEqual(
      asked.requests.map((r) => [r.address, r.channel, r.stage]),
      [[live.approver, "email", 0]],
    );
    assert.ok(Date.parse(asked.expires_at) > Date.now() + 29 * 60_000);

    const read = await agent.get(asked.id);
    assert.equal(read.id, asked.id);
    assert.equal(read.status, "pending");
    assert.equal(read.action, "Refund $120 to order #1042");
  });

  test("the same Idempotency-Key with the same body returns the first decision, not a second", async () => {
    const agent = client();
    const ask = { action: `Deploy ${runId()} to prod`, approver: live.approver };

    const first = await agent.create(ask, { idempotencyKey: `deploy-${ask.action}` });
    const again = await agent.create(ask, { idempotencyKey: `deploy-${ask.action}` });

    assert.equal(again.id, first.id);
  });

  test("the same Idempotency-Key with a different body is a Conflict", async () => {
    const agent = client();
    const key = `key-${runId()}`;
    await agent.create({ action: "Deploy v1.2 to prod", approver: live.approver }, { idempotencyKey: key });

    await assert.rejects(
      agent.create({ action: "Deploy v1.3 to prod", approver: live.approver }, { idempotencyKey: key }),
      (error: unknown) => error instanceof Conflict && error.status === 409,
    );
  });

  test("the portal's fields are sent and read back: verification, requested_by, distinct_stage_approvers", async () => {
    const agent = client();
    const asked = await agent.create({
      action: "Refund $120 to order #1042",
      approver: live.approver,
      verification: "link",
      requested_by: "carol@example.com",
      distinct_stage_approvers: false,
    });

    assert.equal(asked.verification, "link");
    assert.equal(asked.requested_by, "carol@example.com");
    assert.equal(asked.distinct_stage_approvers, false);
    const read = await agent.get(asked.id);
    assert.deepEqual(
      [read.verification, read.requested_by, read.distinct_stage_approvers],
      ["link", "carol@example.com", false],
    );
  });

  test("left out, the portal's fields read back as the service's defaults", async () => {
    const asked = await client().create({ action: "Rotate the API keys", approver: live.approver });

    assert.equal(asked.verification, "link");
    assert.equal(asked.requested_by, ""); // the service sends an empty string for none
    assert.equal(asked.distinct_stage_approvers, true);
    assert.equal(asked.requests[0]?.on_behalf_of, null); // alice herself, not a delegate
  });

  test("fields left undefined are not sent, so the service's defaults apply", async () => {
    const decision = await client().create({
      action: "Rotate the API keys",
      approver: live.approver,
      urgency: undefined,
      context: undefined,
    });
    assert.equal(decision.urgency, "normal");
    assert.equal(decision.context, "");
  });
});

describe("errors carry the service's error body", liveSuite, () => {
  test("invalid input is an InvalidRequest naming the field", async () => {
    const error = await client()
      .create({ action: "Refund", approver: live.approver, timeout_minutes: -5 })
      .catch((e: unknown) => e);

    assert.ok(error instanceof InvalidRequest);
    assert.ok(error instanceof CountersignError);
    assert.equal(error.status, 400);
    assert.equal(typeof error.code, "string");
    assert.ok(error.message.length > 0);
    assert.deepEqual(Object.keys(error.fields), ["timeout_minutes"]);
    assert.deepEqual((error.body as { error: { fields: unknown } }).error.fields, error.fields);
  });

  test("a misspelt field is a TypeError before anything is sent", async () => {
    const sloppy = { action: "Refund", approver: live.approver, timeout_minute: 5 };
    // A JavaScript caller, or an object built at run time: TypeScript cannot see it.
    await assert.rejects(client().create(sloppy as never), {
      name: "TypeError",
      message: "unknown decision field(s): timeout_minute",
    });
  });

  test("a wrong API key is an AuthenticationError", async () => {
    await assert.rejects(
      client({ apiKey: "cs_not-a-real-key" }).get("dec_whatever"),
      (error: unknown) => error instanceof AuthenticationError && error.status === 401,
    );
  });

  test("another organization's or an unknown decision is NotFound", async () => {
    const error = await client()
      .get("dec_01nothinghere0000000000000")
      .catch((e: unknown) => e);
    assert.ok(error instanceof NotFound);
    assert.equal(error.status, 404);
    assert.equal(error.name, "NotFound");
  });

  test("without an API key the client refuses to start", () => {
    const saved = process.env["COUNTERSIGN_API_KEY"];
    delete process.env["COUNTERSIGN_API_KEY"];
    try {
      assert.throws(() => client({ apiKey: "" }), CountersignError);
    } finally {
      process.env["COUNTERSIGN_API_KEY"] = saved;
    }
  });
});

describe("waiting for the answer", liveSuite, () => {
  test("wait long-polls and answers within moments of alice's click", async () => {
    const agent = client();
    const asked = await agent.create({ action: "Deploy v1.2 to prod", approver: live.approver });

    const waiting = agent.wait(asked.id);
    await later(0.5); // the agent is now held in its long-poll
    const clicked = Date.now();
    await aliceAnswers(asked.id, "approve", { note: "go ahead" });
    const decided = await waiting;

    assert.ok(Date.now() - clicked < 5000, "the long-poll should answer at once, not at its end");
    assert.equal(decided.status, "approved");
    assert.equal(decided.outcome?.by, live.approver);
    assert.equal(decided.outcome?.via, "email");
    assert.equal(decided.outcome?.note, "go ahead");
    assert.equal(decided.response_notes, "go ahead");
    assert.equal(decided.requests[0]?.state, "answered");
  });

  test("the outcome says alice was verified by her link; unanswered, it says null", async () => {
    const agent = client();
    const asked = await agent.create({
      action: "Deploy v1.2 to prod",
      approver: live.approver,
      requested_by: "carol@example.com",
    });
    const withdrawn = await agent.create({ action: "Deploy v1.3 to prod", approver: live.approver });

    await aliceAnswers(asked.id, "approve");
    const decided = await agent.wait(asked.id);
    const cancelled = await agent.cancel(withdrawn.id);

    assert.equal(decided.status, "approved");
    assert.equal(decided.outcome?.verified, "link");
    assert.equal(decided.requests[0]?.on_behalf_of, null);
    assert.equal(cancelled.outcome?.verified, null); // nobody answered
  });

  test("get with wait holds the request, then answers with the still-pending decision", async () => {
    const agent = client();
    const asked = await agent.create({ action: "Deploy v1.2 to prod", approver: live.approver });

    const started = Date.now();
    const read = await agent.get(asked.id, { wait: 1 });

    assert.equal(read.status, "pending");
    assert.ok(Date.now() - started >= 900, "the service held the request about a second");
  });

  test("wait with a timeout answers with the pending decision when nobody answers", async () => {
    const agent = client();
    const asked = await agent.create({ action: "Deploy v1.2 to prod", approver: live.approver });

    const read = await agent.wait(asked.id, { timeout: 1 });

    assert.equal(read.status, "pending");
  });

  test("an aborted wait stops at once", async () => {
    const agent = client();
    const asked = await agent.create({ action: "Deploy v1.2 to prod", approver: live.approver });
    const controller = new AbortController();

    const waiting = agent.wait(asked.id, { signal: controller.signal });
    await later(0.3);
    const aborted = Date.now();
    controller.abort(new Error("the user pressed Ctrl-C"));

    await assert.rejects(waiting, { message: "the user pressed Ctrl-C" });
    assert.ok(Date.now() - aborted < 1000);
    await agent.cancel(asked.id); // lets the service end the long-poll it still holds
  });
});

describe("requestApproval: ask, then wait for the outcome", liveSuite, () => {
  test("alice approves with a note", async () => {
    let created: Decision | undefined;

    const outcome = await client().requestApproval(
      { action: "Refund $120 to order #1042", details: { amount: 120 }, approver: live.approver },
      {
        onCreated: async (decision) => {
          created = decision;
          await aliceAnswers(decision.id, "approve", { note: "customer is a regular" });
        },
      },
    );

    assert.equal(outcome.approved, true);
    assert.equal(outcome.status, "approved");
    assert.equal(outcome.decision_id, created?.id);
    assert.equal(outcome.by, live.approver);
    assert.equal(outcome.via, "email");
    assert.equal(outcome.note, "customer is a regular");
    assert.equal(outcome.edited, false);
    assert.deepEqual(outcome.details, { amount: 120 });
    assert.equal(outcome.decision.status, "approved");
  });

  test("alice lowers the amount before approving: the outcome carries the edited details", async () => {
    const outcome = await client().requestApproval(
      { action: "Refund $120 to order #1042", details: { amount: 120, order: 1042 }, approver: live.approver, allow_edit: true },
      { onCreated: (decision) => aliceAnswers(decision.id, "approve", { detail__amount: "100" }) },
    );

    assert.equal(outcome.approved, true);
    assert.equal(outcome.edited, true);
    assert.deepEqual(outcome.details, { amount: 100, order: 1042 });
    assert.notEqual(outcome.action_hash, outcome.decision.action_hash);
  });

  test("alice denies", async () => {
    const outcome = await client().requestApproval(
      { action: "Delete the staging database", approver: live.approver },
      { onCreated: (decision) => aliceAnswers(decision.id, "deny", { note: "not before the demo" }) },
    );

    assert.equal(outcome.approved, false);
    assert.equal(outcome.status, "denied");
    assert.equal(outcome.note, "not before the demo");
  });

  test("alice answers a question in words", async () => {
    const outcome = await client().requestApproval(
      { action: "Which warehouse takes the return of order #1042?", response: "text", approver: live.approver },
      { onCreated: (decision) => aliceAnswers(decision.id, "", { text: "Leeds" }) },
    );

    assert.equal(outcome.status, "responded");
    assert.equal(outcome.text, "Leeds");
  });

  test("nobody answers within the timeout: ApprovalTimeout, and the decision stays pending", async () => {
    const agent = client();
    const error = await agent
      .requestApproval({ action: "Deploy v1.2 to prod", approver: live.approver }, { timeout: 1 })
      .catch((e: unknown) => e);

    assert.ok(error instanceof ApprovalTimeout);
    assert.equal(error.decision.status, "pending");
    assert.equal(approvalOutcome(error.decision), null);
    assert.equal((await agent.get(error.decision.id)).status, "pending");
  });
});

describe("cancel", liveSuite, () => {
  test("a pending decision is cancelled once; cancelling again is a Conflict", async () => {
    const agent = client();
    const asked = await agent.create({ action: "Deploy v1.2 to prod", approver: live.approver });

    const cancelled = await agent.cancel(asked.id);
    assert.equal(cancelled.status, "cancelled");
    assert.equal(cancelled.outcome?.status, "cancelled");

    await assert.rejects(agent.cancel(asked.id), (error: unknown) => error instanceof Conflict);
  });

  test("a waiting agent learns of the cancel", async () => {
    const agent = client();
    const asked = await agent.create({ action: "Deploy v1.2 to prod", approver: live.approver });
    const waiting = agent.wait(asked.id);
    await later(0.3);

    await agent.cancel(asked.id);

    assert.equal((await waiting).status, "cancelled");
  });
});

describe("listing", liveSuite, () => {
  test("list pages newest first; iterDecisions follows the cursors; filters apply", async () => {
    const agent = client();
    const run = runId();
    const before = new Date(Date.now() - 1000);
    const asked: Decision[] = [];
    for (const n of [1, 2, 3]) {
      asked.push(await agent.create({ action: `List ${run} #${n}`, approver: live.approver }));
    }
    await agent.cancel(asked[0]!.id);

    const first = await agent.list({ status: "pending", created_after: before, limit: 1 });
    assert.equal(first.results.length, 1);
    assert.equal(first.results[0]?.id, asked[2]!.id);
    assert.ok(first.nextCursor);

    const second = await agent.list({ status: "pending", created_after: before, limit: 1, cursor: first.nextCursor });
    assert.equal(second.results[0]?.id, asked[1]!.id);
    assert.ok(second.previousCursor);

    const all: string[] = [];
    for await (const decision of agent.iterDecisions({ created_after: before, pageSize: 2 })) {
      if (decision.action.startsWith(`List ${run}`)) all.push(decision.id);
    }
    assert.deepEqual(all, asked.map((d) => d.id).reverse());

    const cancelled = await agent.list({ status: "cancelled", created_after: before.toISOString() });
    assert.ok(cancelled.results.some((d) => d.id === asked[0]!.id));
    assert.ok(!cancelled.results.some((d) => d.id === asked[1]!.id));
  });

  test("a bad filter is an InvalidRequest", async () => {
    await assert.rejects(
      client().list({ created_after: "yesterday-ish" }),
      (error: unknown) => error instanceof InvalidRequest && "created_after" in error.fields,
    );
  });
});
