"""An OpenAI Agents SDK agent whose `needs_approval` tool a person signs off, through
Countersign.

The agent is plain Agents SDK: `issue_refund` is declared with
`@function_tool(needs_approval=True)`, so a run that calls it stops with interruptions. An
ApprovalRunner asks the approver, approves or rejects each interruption on the run's
RunState from their answer (a rejection's note is what the model reads), and runs on.

    export COUNTERSIGN_URL=http://127.0.0.1:8000 COUNTERSIGN_API_KEY=cs_...
    export COUNTERSIGN_APPROVER=alice@example.com   # who approves (the default)
    python examples/openai_agents_refund.py            # blocking: waits by long-poll
    python examples/openai_agents_refund.py --durable  # the paused run is saved to a file

Answer at http://127.0.0.1:8000/dev/outbox/. The model is a scripted Model class (the SDK
takes any), so the example needs no OpenAI key and no network: drop `model=` for a real one.

--durable saves the paused run (RunState.to_string()) in a FileRunStore and stops once the
approver is asked; in production runner.asgi_app() (or wsgi_app(), django_view()) mounted
at callback_url resumes it when they answer, in whichever process receives the callback.
Without a public URL, as here, it then resumes by long-poll.
"""

import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

from agents import Agent, ModelResponse, RunConfig, Usage, function_tool
from agents.models.interface import Model
from countersign import Countersign, Decision
from countersign.openai_agents import ApprovalRunner, FileRunStore
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText


class ScriptedModel(Model):
    """Stands in for an LLM: first it calls issue_refund; once the tool's output (or its
    rejection) is in, it reports it."""

    async def get_response(self, system_instructions, input, *args, **kwargs) -> ModelResponse:
        items = input if isinstance(input, list) else []
        outputs = [
            i["output"] for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if outputs:
            text = ResponseOutputText(
                text=f"Ticket handled: {outputs[-1]}", type="output_text", annotations=[]
            )
            output = [
                ResponseOutputMessage(
                    id="msg", type="message", role="assistant", status="completed", content=[text]
                )
            ]
        else:
            arguments = json.dumps({"order": 1042, "amount": 120})
            output = [
                ResponseFunctionToolCall(
                    id="fc",
                    call_id="call_refund",
                    type="function_call",
                    name="issue_refund",
                    arguments=arguments,
                )
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError


@function_tool(needs_approval=True)
def issue_refund(order: int, amount: int) -> str:
    """Refund an order."""
    return f"refunded ${amount} on order #{order}"


agent = Agent(name="Support", instructions="Help the customer.", model=ScriptedModel(), tools=[issue_refund])


def say(text: str) -> None:
    print(text, flush=True)


def asked(decision: Decision) -> None:
    say(f"  asked: {decision.action!r} ({decision.id})")


async def main() -> None:
    client = Countersign()
    approver = os.environ.get("COUNTERSIGN_APPROVER", "alice@example.com")
    say(f"Approvals go to {approver}; answer at {client.settings.base_url}/dev/outbox/")
    runs = Path(tempfile.gettempdir()) / "countersign-openai-agents-runs"
    runner = ApprovalRunner(
        agent,
        store=FileRunStore(runs),
        client=client,
        defaults={"approver": approver, "timeout_minutes": 30},
        tools={"issue_refund": {"action": "Refund ${amount} to order #{order}"}},
        # In production: callback_url=… and webhook_secret=…, and runner.asgi_app() mounted there.
        run_kwargs={"run_config": RunConfig(tracing_disabled=True)},
        on_forward=asked,
    )
    ticket = "My parcel for order #1042 arrived broken."

    if "--durable" in sys.argv:
        run_id = f"ticket-{uuid.uuid4().hex[:8]}"
        paused = await runner.start(ticket, run_id=run_id)
        say(f"Paused on {len(paused.waiting_on)} approval(s); the run is saved in {runs}.")
        status = await runner.wait_and_resume(run_id)
        say(f"  {status.final_output}")
    else:
        result = await runner.run_until_done(ticket)  # blocks until every approval is answered
        say(f"  {result.final_output}")


if __name__ == "__main__":
    asyncio.run(main())
