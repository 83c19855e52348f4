/**
 * Callbacks, end to end: the decision names a receiver this test runs on a real port; alice
 * answers; the service's worker POSTs the signed callback; the receiver verifies it with
 * `verifyWebhook`, as an agent's would. Then what must not pass: a changed body, a wrong
 * secret, an old (replayed) timestamp.
 */

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";

import { type WebhookEvent, WebhookVerificationError, verifyWebhook } from "countersign";
import { Webhook } from "standardwebhooks";

import { aliceAnswers, client, live, liveSuite } from "./live.js";

interface Delivery {
  body: Buffer;
  headers: http.IncomingHttpHeaders;
  event: WebhookEvent;
}

/** The agent's callback endpoint: verifies each POST, answers 200 or 401, and keeps what it got. */
class Receiver {
  readonly #waiting = new Map<string, (delivery: Delivery) => void>();
  readonly #received = new Map<string, Delivery>();
  readonly refused: string[] = [];
  readonly #server = http.createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    let event: WebhookEvent;
    try {
      event = verifyWebhook(body, request.headers, live.webhookSecret);
    } catch (error) {
      this.refused.push(String(error));
      response.writeHead(401).end(); // a 4xx: Countersign does not retry it
      return;
    }
    response.writeHead(200).end();
    const delivery = { body, headers: request.headers, event };
    this.#received.set(event.decision.id, delivery);
    this.#waiting.get(event.decision.id)?.(delivery);
  });

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/countersign/callback`;
  }

  /** The verified callback of that decision, once the service has delivered it. */
  callbackOf(decisionId: string, seconds = 30): Promise<Delivery> {
    const already = this.#received.get(decisionId);
    if (already) return Promise.resolve(already);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no callback for ${decisionId} in ${seconds} s`)), seconds * 1000);
      this.#waiting.set(decisionId, (delivery) => {
        clearTimeout(timer);
        resolve(delivery);
      });
    });
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

describe("callbacks", liveSuite, () => {
  const receiver = new Receiver();
  let approved: Delivery;

  before(async () => {
    await receiver.start();
    const asked = await client().create({
      action: "Refund $120 to order #1042",
      details: { amount: 120 },
      approver: live.approver,
      callback_url: receiver.url,
      metadata: { thread_id: "refund-1042" },
    });
    await aliceAnswers(asked.id, "approve", { note: "ok" });
    approved = await receiver.callbackOf(asked.id);
  });
  after(() => receiver.stop());

  test("alice's answer reaches the agent as a verified, typed event", () => {
    const { event, headers } = approved;
    assert.equal(event.type, "decision.resolved");
    assert.equal(event.id, headers["webhook-id"]);
    assert.equal(event.decision.status, "approved");
    assert.deepEqual(event.decision.metadata, { thread_id: "refund-1042" });
    assert.equal(event.outcome?.approved, true);
    assert.equal(event.outcome?.by, live.approver);
    assert.equal(event.outcome?.note, "ok");
    assert.equal(event.timestamp, event.decision.resolved_at?.replace("+00:00", "Z"));
    assert.deepEqual(receiver.refused, []);
  });

  test("the body may be a string, bytes or an ArrayBuffer; the headers a fetch Headers", () => {
    const { body, headers } = approved;
    const fetchHeaders = new Headers(headers as Record<string, string>);
    const arrayBuffer = new Uint8Array(body).buffer; // a copy: exactly the body
    for (const raw of [body.toString("utf8"), new Uint8Array(body), arrayBuffer]) {
      assert.equal(verifyWebhook(raw, fetchHeaders, live.webhookSecret).decision.status, "approved");
    }
  });

  test("a cancelled decision's callback arrives too", async () => {
    const asked = await client().create({ action: "Deploy v1.2 to prod", approver: live.approver, callback_url: receiver.url });
    await client().cancel(asked.id);

    const { event } = await receiver.callbackOf(asked.id);

    assert.equal(event.decision.status, "cancelled");
    assert.equal(event.outcome?.approved, false);
  });

  test("a changed body is refused", () => {
    const forged = approved.body.toString("utf8").replace('"approved"', '"denied"');
    assert.throws(() => verifyWebhook(forged, approved.headers, live.webhookSecret), WebhookVerificationError);
  });

  test("another secret is refused; during a rotation either secret is accepted", () => {
    const other = `whsec_${Buffer.from("someone else's secret, 32 bytes").toString("base64")}`;
    assert.throws(() => verifyWebhook(approved.body, approved.headers, other), WebhookVerificationError);
    assert.throws(() => verifyWebhook(approved.body, approved.headers, []), WebhookVerificationError);
    assert.throws(() => verifyWebhook(approved.body, approved.headers, "not a secret"), WebhookVerificationError);

    const event = verifyWebhook(approved.body, approved.headers, [other, live.webhookSecret]);
    assert.equal(event.decision.status, "approved");
  });

  test("missing signature headers are refused", () => {
    const { "webhook-signature": _, ...unsigned } = approved.headers;
    assert.throws(() => verifyWebhook(approved.body, unsigned, live.webhookSecret), WebhookVerificationError);
  });

  test("a callback replayed ten minutes later is refused, though correctly signed", () => {
    const id = String(approved.headers["webhook-id"]);
    const tenMinutesAgo = new Date(Date.now() - 10 * 60_000);
    const body = approved.body.toString("utf8");
    const replayed = {
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(tenMinutesAgo.getTime() / 1000)),
      "webhook-signature": new Webhook(live.webhookSecret).sign(id, tenMinutesAgo, body),
    };

    assert.throws(() => verifyWebhook(body, replayed, live.webhookSecret), /too old/);
  });

  test("a signed body that is not a decision event is refused", () => {
    const now = new Date();
    const body = JSON.stringify({ hello: "world" });
    const headers = {
      "webhook-id": "msg_1",
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": new Webhook(live.webhookSecret).sign("msg_1", now, body),
    };
    assert.throws(() => verifyWebhook(body, headers, live.webhookSecret), /not a Countersign event/);
  });
});
