"""An MCP client asking Countersign, as Claude Code or an IDE agent would: it starts
`countersign-mcp` over stdio, asks for permission to run a shell command (the tool Claude
Code's --permission-prompt-tool calls), and prints the answer. Runs against `make dev`:

    pip install "countersign[mcp]"
    export COUNTERSIGN_URL=http://127.0.0.1:8000 COUNTERSIGN_API_KEY=cs_...
    export COUNTERSIGN_APPROVER=alice@example.com     # who is asked (the default)
    python examples/mcp_agent.py "rm -rf build"

Answer at http://127.0.0.1:8000/dev/outbox/ within the wait (60 s here): the approval page
lets you edit the command before approving, and the agent runs the command as you left it.
"""

import json
import os
import sys

import anyio
from mcp import Client, StdioServerParameters


def say(text: str) -> None:
    print(text, flush=True)


async def main(command: str) -> int:
    server = StdioServerParameters(
        command="countersign-mcp",
        args=["--approver", os.environ.get("COUNTERSIGN_APPROVER", "alice@example.com"), "--wait", "60"],
        env={
            name: os.environ[name]
            for name in ("COUNTERSIGN_URL", "COUNTERSIGN_API_KEY")
            if name in os.environ
        },
    )
    async with Client(server) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
        say(f"1. connected to countersign-mcp: tools {', '.join(tools)}")
        say(f"2. asking for permission to run: {command}")
        result = await client.call_tool(
            "permission_prompt",
            {"tool_name": "Bash", "input": {"command": command}, "tool_use_id": f"toolu_{os.getpid()}"},
        )
        answer = json.loads(result.content[0].text)
        if answer["behavior"] == "allow":
            say(f"3. allowed: would run {answer['updatedInput']['command']!r}")
            return 0
        say(f"3. denied: {answer['message']}")
        return 1


if __name__ == "__main__":
    sys.exit(anyio.run(main, " ".join(sys.argv[1:]) or "rm -rf build"))
