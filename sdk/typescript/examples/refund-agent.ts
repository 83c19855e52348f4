/**
 * A LangGraph.js refund agent whose graph waits for a person's sign-off (blocking style).
 *
 * The `ask_finance` node asks through Countersign and waits by long-poll: no callback URL,
 * nothing else to run. Good for scripts, workers and demos.
 *
 *   make dev                                   # in the repository: prints an API key
 *   export COUNTERSIGN_API_KEY=cs_...          # COUNTERSIGN_URL defaults to http://127.0.0.1:8000
 *   npm run example:refund                     # then answer as alice at /dev/outbox/
 */

import { randomUUID } from "node:crypto";

import { Annotation, END, type LangGraphRunnableConfig, MemorySaver, START, StateGraph } from "@langchain/langgraph";
import { Countersign } from "countersign";

const client = new Countersign(); // COUNTERSIGN_URL, COUNTERSIGN_API_KEY
const approver = process.env["COUNTERSIGN_APPROVER"] ?? "alice@example.com";

const Refund = Annotation.Root({
  order: Annotation<number>(),
  amount: Annotation<number>(),
  approved: Annotation<boolean>(),
  log: Annotation<string[]>({ reducer: (left, right) => left.concat(right), default: () => [] }),
});

async function askFinance(state: typeof Refund.State, config: LangGraphRunnableConfig) {
  const outcome = await client.requestApproval(
    {
      action: `Refund $${state.amount} to order #${state.order}`,
      details: { amount: state.amount, order: state.order },
      approver,
      allow_edit: true, // finance may lower the amount before approving
      timeout_minutes: 30,
    },
    {
      // Derived from the thread: a graph re-run from its checkpoint after a crash finds the
      // same decision instead of asking again.
      idempotencyKey: `refund-agent:${config.configurable?.["thread_id"]}:ask_finance`,
      onCreated: (decision) =>
        console.log(`asked ${approver} (${decision.id}); answer at ${client.baseUrl}/dev/outbox/ with make dev`),
    },
  );
  const amount = Number(outcome.details["amount"] ?? state.amount);
  return {
    amount, // as approved: the approver may have edited it
    approved: outcome.approved,
    log: [`${outcome.status} by ${outcome.by}${outcome.note ? ` (${outcome.note})` : ""}`],
  };
}

function issueRefund(state: typeof Refund.State) {
  if (!state.approved) return { log: ["no refund"] };
  return { log: [`refunded $${state.amount} on order #${state.order}`] };
}

const graph = new StateGraph(Refund)
  .addNode("ask_finance", askFinance)
  .addNode("issue_refund", issueRefund)
  .addEdge(START, "ask_finance")
  .addEdge("ask_finance", "issue_refund")
  .addEdge("issue_refund", END)
  .compile({ checkpointer: new MemorySaver() });

const threadId = `refund-1042-${randomUUID().slice(0, 8)}`;
const final = await graph.invoke({ order: 1042, amount: 120 }, { configurable: { thread_id: threadId } });
for (const line of final.log) console.log(line);
