/**
 * A LangGraph.js graph that pauses with plain `interrupt()` and is resumed by Countersign's
 * signed callback (durable style).
 *
 * The graph knows nothing of Countersign. The agent forwards each pending interrupt as a
 * decision whose `callback_url` is its own endpoint; when the person answers, the endpoint
 * verifies the Standard Webhooks signature and resumes the thread with `Command({ resume })`.
 * Nothing waits in between: with a durable checkpointer (e.g. @langchain/langgraph-checkpoint-postgres)
 * the process that receives the callback may be a new one.
 *
 *   make dev                                   # in the repository (it sets CALLBACK_ALLOW_PRIVATE=1)
 *   export COUNTERSIGN_API_KEY=cs_...
 *   export COUNTERSIGN_WEBHOOK_SECRET=$(python manage.py webhook_secret --org demo | tail -n 1)
 *   npm run example:callback                   # then answer as alice at /dev/outbox/
 *
 * CALLBACK_PORT (default 8765) is where it listens; CALLBACK_URL, if the service reaches it
 * by another address.
 */

import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

import {
  Annotation,
  Command,
  END,
  INTERRUPT,
  MemorySaver,
  START,
  StateGraph,
  interrupt,
  isInterrupted,
} from "@langchain/langgraph";
import { Countersign, type JsonObject, WebhookVerificationError, verifyWebhook } from "countersign";

const client = new Countersign(); // COUNTERSIGN_URL, COUNTERSIGN_API_KEY
const approver = process.env["COUNTERSIGN_APPROVER"] ?? "alice@example.com";
const secret = process.env["COUNTERSIGN_WEBHOOK_SECRET"];
if (!secret) throw new Error("Set COUNTERSIGN_WEBHOOK_SECRET (python manage.py webhook_secret --org <slug>).");

// --- the graph: plain LangGraph.js ---------------------------------------------------------

/** What the graph gets back from interrupt(). */
interface Answer {
  status: string;
  approved: boolean;
  by: string;
  note: string | null;
}

const Refund = Annotation.Root({
  order: Annotation<number>(),
  amount: Annotation<number>(),
  approved: Annotation<boolean>(),
  log: Annotation<string[]>({ reducer: (left, right) => left.concat(right), default: () => [] }),
});

function reviewRefund(state: typeof Refund.State) {
  // A node runs again from the top when resumed: keep side effects after interrupt().
  const answer = interrupt<JsonObject, Answer>({
    action: `Refund $${state.amount} to order #${state.order}`,
    details: { amount: state.amount, order: state.order },
  });
  return { approved: answer.approved, log: [`${answer.status} by ${answer.by}`] };
}

function issueRefund(state: typeof Refund.State) {
  return { log: [state.approved ? `refunded $${state.amount} on order #${state.order}` : "no refund"] };
}

const graph = new StateGraph(Refund)
  .addNode("review_refund", reviewRefund)
  .addNode("issue_refund", issueRefund)
  .addEdge(START, "review_refund")
  .addEdge("review_refund", "issue_refund")
  .addEdge("issue_refund", END)
  .compile({ checkpointer: new MemorySaver() }); // in production: a durable checkpointer

// --- the agent: forward interrupts, resume on the verified callback -------------------------

let finished: (log: string[]) => void;
const done = new Promise<string[]>((resolve) => (finished = resolve));

const receiver = http.createServer(async (request, response) => {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  let event;
  try {
    event = verifyWebhook(Buffer.concat(chunks), request.headers, secret);
  } catch (error) {
    if (!(error instanceof WebhookVerificationError)) throw error;
    response.writeHead(401).end(); // a 4xx: Countersign does not retry it
    return;
  }
  console.log(`callback verified: ${event.decision.id} ${event.decision.status}`);
  const { thread_id } = event.decision.metadata["langgraph"] as { thread_id: string };
  const config = { configurable: { thread_id } };
  // A retried delivery (same webhook-id) finds the thread no longer waiting: nothing to do.
  if ((await graph.getState(config)).next.includes("review_refund")) {
    const outcome = event.outcome!;
    const answer: Answer = { status: outcome.status, approved: outcome.approved, by: outcome.by, note: outcome.note };
    const final = await graph.invoke(new Command({ resume: answer }), config);
    finished(final.log);
  }
  response.writeHead(200).end(); // after the resume: had it failed, Countersign would deliver again
});
await new Promise<void>((resolve) => receiver.listen(Number(process.env["CALLBACK_PORT"] ?? 8765), "127.0.0.1", resolve));
const port = (receiver.address() as AddressInfo).port;
const callbackUrl = process.env["CALLBACK_URL"] ?? `http://127.0.0.1:${port}/countersign/callback`;

const threadId = `refund-1042-${randomUUID().slice(0, 8)}`;
const config = { configurable: { thread_id: threadId } };
const paused = await graph.invoke({ order: 1042, amount: 120 }, config);
const pending = isInterrupted<{ action: string; details: JsonObject }>(paused) ? paused[INTERRUPT] : [];
for (const { id, value: asked } of pending) {
  const decision = await client.create(
    {
      action: asked!.action,
      details: asked!.details,
      approver,
      callback_url: callbackUrl,
      metadata: { langgraph: { thread_id: threadId, interrupt_id: id ?? null } },
    },
    // Forwarding the same interrupt again (after a crash) finds the same decision.
    { idempotencyKey: `langgraph:${threadId}:${id}` },
  );
  console.log(`waiting on ${approver} (${decision.id}); the answer comes back to ${callbackUrl}`);
}

for (const line of await done) console.log(line);
receiver.close();
