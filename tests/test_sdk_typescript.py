"""The TypeScript SDK (sdk/typescript, `countersign` on npm) against a live Countersign.

Its own tests run under Node's test runner (`npm test`) and talk HTTP to the service under
pytest-django's live server, with a real Celery worker delivering callbacks to receivers the
Node tests run themselves. Alice plays the approver as her email lets her: when a Node test
says so (over a small local "alice" endpoint this file serves), her one-click link is built
and its confirm form POSTed, as in tests/test_sdk_langgraph.py.

Also here: the LangGraph.js examples run end to end, and the packed tarball installs and
type-checks alone in an empty directory.

Named actors: Acme's agent asks; alice answers.
"""

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from django.db import connections

from decisions.links import link_url
from decisions.models import ApprovalRequest, Decision
from organizations.services import webhook_secret_current
from tests.conftest import ALICE, IN_CI

SDK = Path(__file__).resolve().parent.parent / "sdk" / "typescript"

# A real server sees committed data only; the worker needs the Redis broker.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def _node_major() -> int | None:
    if not shutil.which("node") or not shutil.which("npm"):
        return None
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    return int(version.strip().lstrip("v").split(".")[0])


NODE_MAJOR = _node_major()


def _run(command: list[str], *, cwd: Path, env: dict | None = None, timeout: float = 600):
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def sdk_built() -> Path:
    """`npm ci` from the committed lockfile, then the build: what CI does on a clean clone."""
    if NODE_MAJOR is None:
        if IN_CI:
            pytest.fail("CI must run the TypeScript SDK's tests, and node/npm are not installed.")
        pytest.skip("needs node and npm")
    _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SDK)
    _run(["npm", "run", "build"], cwd=SDK)
    return SDK


@pytest.fixture(autouse=True)
def _service_reachable_from_the_agent(settings, live_server):
    settings.PUBLIC_BASE_URL = live_server.url  # alice's links point at the live server
    settings.CALLBACK_ALLOW_PRIVATE = True  # the Node tests' receivers listen on 127.0.0.1


# --- alice, on call for the Node tests ----------------------------------------------------


def alice_clicks(decision_id: str, choice: str, form: dict[str, str] | None = None) -> int:
    """What alice's email button does: the one-click link, then its confirm form."""
    request = ApprovalRequest.objects.get(decision_id=decision_id, address=ALICE)
    page = httpx.post(link_url(request, choice), data={"confirm": "yes", **(form or {})})
    return page.status_code


class _AliceHandler(BaseHTTPRequestHandler):
    """POST /answer {"decision_id", "choice", "form"}: alice answers that decision."""

    def do_POST(self) -> None:
        try:
            asked = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            status = alice_clicks(asked["decision_id"], asked["choice"], asked.get("form"))
            self._reply(200, {"page_status": status})
        except Exception as exc:  # the Node test reports it; this side must keep serving
            self._reply(500, {"error": repr(exc)})
        finally:
            connections.close_all()  # this request's thread is done with the database

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def alice_on_call() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AliceHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class AliceApprovesEverything:
    """Alice reading her inbox: every pending decision put to her is approved, with a note.
    For the examples, which print their decision ids rather than ask for her."""

    def __init__(self) -> None:
        self.answered: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.2):
                waiting = ApprovalRequest.objects.filter(
                    address=ALICE, decision__status="pending", answered_at__isnull=True
                ).values_list("decision_id", flat=True)
                for decision_id in waiting:
                    if decision_id not in self.answered:
                        alice_clicks(decision_id, "approve", {"note": "fine by me"})
                        self.answered.append(decision_id)
        finally:
            connections.close_all()

    def __enter__(self) -> "AliceApprovesEverything":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _node_env(live_server, acme, acme_key, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "COUNTERSIGN_URL": live_server.url,
        "COUNTERSIGN_API_KEY": acme_key[1],
        "COUNTERSIGN_WEBHOOK_SECRET": webhook_secret_current(organization=acme).secret,
        "COUNTERSIGN_APPROVER": ALICE,
        "CI": "true",  # the Node tests then fail, never skip, without a live service
        **extra,
    }


def _counts(output: str) -> dict[str, int]:
    """The closing counts of Node's test runner: TAP (`# pass 3`), or its spec reporter's
    (an information sign, U+2139, instead of `#`)."""
    pattern = r"^[#\u2139] (tests|pass|fail|skipped|todo|cancelled) (\d+)$"
    return {name: int(number) for name, number in re.findall(pattern, output, re.M)}


# --- the tests ----------------------------------------------------------------------------


def test_the_typescript_sdk_passes_its_node_tests_against_the_live_service(
    sdk_built, live_server, acme, acme_key, alice_on_call, celery_worker, tmp_path
):
    env = _node_env(live_server, acme, acme_key, COUNTERSIGN_TEST_ALICE=alice_on_call)
    log = tmp_path / "npm-test.log"

    with log.open("w") as out:
        try:
            returncode = subprocess.run(
                ["npm", "test"], cwd=sdk_built, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600
            ).returncode
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm test did not finish in 10 minutes; its output so far:\n{log.read_text()}")

    output = log.read_text()
    assert returncode == 0, output
    counts = _counts(output)
    print(f"node --test: {counts}")
    assert counts.get("fail") == 0, output
    assert counts.get("skipped", 0) == 0, output
    assert counts.get("cancelled", 0) == 0, output
    assert counts.get("pass", 0) >= 25, output  # every test file ran, none silently dropped
    # Alice really answered through her links: the service recorded her email clicks.
    assert Decision.objects.filter(outcome__by=ALICE, outcome__via="email").count() >= 5


@pytest.mark.skipif(
    NODE_MAJOR is not None and NODE_MAJOR < 20,
    reason=f"LangGraph.js needs Node.js 20 or newer (@langchain/core's engines); this is Node {NODE_MAJOR}",
)
def test_the_langgraph_js_refund_agent_waits_for_alice_and_refunds(sdk_built, live_server, acme, acme_key):
    _run(["npm", "run", "build:tests"], cwd=sdk_built)

    with AliceApprovesEverything() as alice:
        run = _run(
            ["node", "build/examples/refund-agent.js"],
            cwd=sdk_built,
            env=_node_env(live_server, acme, acme_key),
            timeout=120,
        )

    assert len(alice.answered) == 1
    decision = Decision.objects.get(pk=alice.answered[0])
    assert decision.action == "Refund $120 to order #1042"
    assert decision.outcome["by"] == ALICE
    assert f"approved by {ALICE}" in run.stdout
    assert "refunded $120 on order #1042" in run.stdout


@pytest.mark.skipif(
    NODE_MAJOR is not None and NODE_MAJOR < 20,
    reason=f"LangGraph.js needs Node.js 20 or newer (@langchain/core's engines); this is Node {NODE_MAJOR}",
)
def test_the_langgraph_js_interrupt_is_resumed_by_the_verified_callback(
    sdk_built, live_server, acme, acme_key, celery_worker
):
    _run(["npm", "run", "build:tests"], cwd=sdk_built)

    with AliceApprovesEverything() as alice:
        run = _run(
            ["node", "build/examples/interrupt-callback.js"],
            cwd=sdk_built,
            env=_node_env(live_server, acme, acme_key, CALLBACK_PORT="0"),
            timeout=120,
        )

    (decision_id,) = alice.answered
    decision = Decision.objects.get(pk=decision_id)
    assert decision.metadata["langgraph"]["thread_id"].startswith("refund-1042-")
    assert decision.callback_url.startswith("http://127.0.0.1:")
    assert "callback verified" in run.stdout
    assert "refunded $120 on order #1042" in run.stdout


def test_the_packed_sdk_installs_alone_and_type_checks_in_an_empty_project(
    sdk_built, live_server, acme_key, tmp_path
):
    # given: the tarball npm would publish, and a project that has nothing but it
    packed = _run(["npm", "pack", "--json", "--pack-destination", str(tmp_path)], cwd=sdk_built)
    (tarball,) = json.loads(packed.stdout)
    files = {entry["path"] for entry in tarball["files"]}
    assert {"dist/index.js", "dist/index.d.ts", "package.json", "README.md"} <= files
    assert not any(path.startswith(("src/", "test/", "examples/", "node_modules/")) for path in files)

    project = tmp_path / "agent"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "agent", "private": True, "type": "module"}))
    _run(["npm", "install", "--no-audit", "--no-fund", str(tmp_path / tarball["filename"])], cwd=project)
    installed = sorted(path.name for path in (project / "node_modules").iterdir())
    assert "countersign" in installed
    assert "standardwebhooks" in installed
    assert "@langchain" not in installed  # the examples' dependencies stay in the SDK's repo

    (project / "agent.ts").write_text(CONSUMER)
    (project / "tsconfig.json").write_text(json.dumps(CONSUMER_TSCONFIG))

    # when: its types are checked (strict) and it runs against the service
    _run([str(SDK / "node_modules" / ".bin" / "tsc"), "-p", "."], cwd=project)
    run = _run(
        ["node", "agent.js"],
        cwd=project,
        env={**os.environ, "COUNTERSIGN_URL": live_server.url, "COUNTERSIGN_API_KEY": acme_key[1]},
    )

    # then
    assert run.stdout.strip().splitlines()[-1] == "cancelled NotFound"


# A user's first program, type-checked against the installed .d.ts files.
CONSUMER = """
import { Countersign, NotFound, type Decision, type DecisionCreate } from "countersign";

const client = new Countersign();
const ask: DecisionCreate = { action: "Deploy v1.2 to prod", approver: "alice@example.com", urgency: "high" };
const decision: Decision = await client.create(ask);
const cancelled = await client.cancel(decision.id);
try {
  await client.get("dec_nothing_here");
} catch (error) {
  console.log(cancelled.status, error instanceof NotFound ? error.name : String(error));
}
"""

CONSUMER_TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "module": "NodeNext",
        "moduleResolution": "NodeNext",
        "strict": True,
        # The SDK's own @types/node: this fresh project installed nothing but the tarball.
        "typeRoots": [str(SDK / "node_modules" / "@types")],
        "types": ["node"],
    },
    "files": ["agent.ts"],
}
