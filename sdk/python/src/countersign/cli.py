"""`countersign`: ask a person to sign off from a shell script or a CI job, and wait.

    countersign ask "Deploy v1.2 to prod" --approver alice@example.com --detail version=1.2 --timeout 30m

waits (by long-poll) until the decision is resolved and exits 0 if approved, 1 if denied (or
answered with another option), 2 if it expired or was cancelled, 3 on any error. Also `wait`,
`get`, `cancel`, `list` and `audit export`. Reads COUNTERSIGN_URL and COUNTERSIGN_API_KEY.

On a terminal, who was asked and the time left are shown on stderr; piped, stderr stays quiet
and stdout has the outcome alone (or the decision as JSON with --json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from countersign import errors
from countersign.client import Countersign
from countersign.models import Decision

APPROVED, DENIED, NOT_ANSWERED, ERROR = 0, 1, 2, 3
EXIT_CODES = {
    "approved": APPROVED,
    "denied": DENIED,
    "responded": DENIED,  # answered, but not approved: a gate stays shut
    "expired": NOT_ANSWERED,
    "cancelled": NOT_ANSWERED,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_MINUTES = {"s": 1 / 60, "m": 1, "h": 60, "d": 24 * 60}


class Terminated(Exception):
    """SIGTERM (a CI job cancelled), or Ctrl-C."""


class _Interrupts:
    """SIGINT and SIGTERM raise Terminated, except while held back: then they are noted, and
    raised once released. A signal that lands while the decision is being created would
    otherwise lose its id (committed on the service, its answer never read) and leave it
    pending for nobody."""

    def __init__(self) -> None:
        self.held = False
        self.noted = False

    def handle(self, signum: int, frame: object) -> None:
        if self.held:
            self.noted = True
            return
        raise Terminated

    @contextlib.contextmanager
    def held_back(self) -> Iterator[None]:
        self.held = True
        try:
            yield
        finally:
            self.held = False
        if self.noted:
            self.noted = False
            raise Terminated


_interrupts = _Interrupts()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits 2 on a usage error; here 2 means "expired or cancelled".
        self.print_usage(sys.stderr)
        self.exit(ERROR, f"{self.prog}: error: {message}\n")


def minutes(text: str) -> float:
    """'30m', '2h', '1h30m', '90s', '1d'; a bare number is minutes (the API's unit)."""
    text = text.strip().lower()
    try:
        value = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            message = f"'{text}' is not a duration such as 30m, 2h, 1h30m or 90s"
            raise argparse.ArgumentTypeError(message) from None
        value = sum(float(number) * _UNIT_MINUTES[unit] for number, unit in parts)
    if not value > 0:
        raise argparse.ArgumentTypeError("a duration must be more than 0")
    return value


def detail(text: str) -> tuple[str, Any]:
    """key=value (a string) or key:=json (a number, true/false, a list…), as httpie has it."""
    raw_key, sep, raw_value = text.partition("=")
    if not sep or not raw_key.rstrip(":"):
        raise argparse.ArgumentTypeError(f"'{text}' is not key=value or key:=json")
    if raw_key.endswith(":"):
        try:
            return raw_key[:-1], json.loads(raw_value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{raw_value}' is not JSON (in {text})") from None
    return raw_key, raw_value


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _waiting_for(decision: Decision) -> str:
    pending = [f"{r.address} ({r.channel})" for r in decision.requests if r.state == "pending"]
    return ", ".join(dict.fromkeys(pending)) or "the approvers"


class Progress:
    """A line on stderr, redrawn every second while the long-poll waits: who has yet to answer,
    and the time left. Only on a terminal; elsewhere every method does nothing."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.on = stream.isatty()
        self._decision: Decision | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        if self.on:
            with self._lock:
                self.stream.write(f"\r\033[K{line}\n")
                self.stream.flush()

    def show(self, decision: Decision) -> None:
        if not self.on:
            return
        self._decision = decision
        if not self._thread.is_alive():
            self._thread.start()
        self._draw()

    def close(self) -> None:
        if self.on and self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            with self._lock:
                self.stream.write("\r\033[K")
                self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._draw()

    def _draw(self) -> None:
        decision = self._decision
        if decision is None:
            return
        line = f"Waiting for {_waiting_for(decision)}"
        if decision.expires_at is not None:
            left = (decision.expires_at - datetime.now(UTC)).total_seconds()
            line += f" · {_clock(left)} left"
        width = shutil.get_terminal_size().columns
        with self._lock:
            self.stream.write("\r\033[K" + line[: max(width - 1, 10)])
            self.stream.flush()


def _outcome_line(decision: Decision) -> str:
    outcome = decision.outcome
    if outcome is None:
        return f"{decision.id} pending: waiting for {_waiting_for(decision)}"
    if decision.status == "expired":
        line = f"{decision.id} expired: nobody answered in time"
    else:
        line = f"{decision.id} {decision.status} by {outcome.by} via {outcome.via}"
    answer = outcome.text or (outcome.choice if decision.status == "responded" else None)
    if answer:
        line += f": {answer}"
    if outcome.note:
        line += f" (note: {outcome.note})"
    if outcome.edited:
        line += f" (edited: {json.dumps(outcome.details, ensure_ascii=False)})"
    return line


def _print_decision(decision: Decision, args: argparse.Namespace, out: TextIO) -> None:
    if args.json:
        out.write(json.dumps(decision.raw, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(_outcome_line(decision) + "\n")


def _wait_until_resolved(
    client: Countersign,
    decision: Decision,
    progress: Progress,
    *,
    withdraw_on_interrupt: bool,
    interrupted: bool = False,
) -> Decision:
    try:
        if interrupted:
            raise Terminated
        while decision.is_pending:
            progress.show(decision)
            decision = client.get(decision.id, wait=60)
    except (KeyboardInterrupt, Terminated):
        progress.close()
        if not withdraw_on_interrupt:
            raise
        # The job that asked is gone: nobody would act on an answer, so take the question back
        # (and let a second signal not stop that).
        _interrupts.held = True
        try:
            decision = client.cancel(decision.id)
            progress.say(f"Interrupted: withdrew {decision.id}.")
        except errors.Conflict:
            decision = client.get(decision.id)  # answered meanwhile: report that
    finally:
        progress.close()
    return decision


def cmd_ask(client: Countersign, args: argparse.Namespace, out: TextIO, progress: Progress) -> int:
    fields: dict[str, Any] = {
        "context": args.context,
        "details": dict(args.detail) if args.detail else None,
        "approvers": args.approver,
        "options": args.option,
        "allow_edit": True if args.allow_edit else None,
        "urgency": args.urgency,
        "timeout_minutes": args.timeout,
        "on_timeout": args.on_timeout,
        "callback_url": args.callback_url,
    }
    interrupted = False
    try:
        with _interrupts.held_back():
            decision = client.create(
                args.action,
                idempotency_key=args.idempotency_key,
                **{name: value for name, value in fields.items() if value is not None},
            )
    except Terminated:
        interrupted = True
    if decision.is_pending and not interrupted:
        progress.say(f"Asked {_waiting_for(decision)} to sign off on {decision.action!r} ({decision.id}).")
    decision = _wait_until_resolved(
        client, decision, progress, withdraw_on_interrupt=True, interrupted=interrupted
    )
    _print_decision(decision, args, out)
    return EXIT_CODES.get(decision.status, ERROR)


def cmd_wait(client: Countersign, args: argparse.Namespace, out: TextIO, progress: Progress) -> int:
    decision = _wait_until_resolved(client, client.get(args.id), progress, withdraw_on_interrupt=False)
    _print_decision(decision, args, out)
    return EXIT_CODES.get(decision.status, ERROR)


def cmd_get(client: Countersign, args: argparse.Namespace, out: TextIO, progress: Progress) -> int:
    _print_decision(client.get(args.id, wait=args.wait), args, out)
    return 0


def cmd_cancel(client: Countersign, args: argparse.Namespace, out: TextIO, progress: Progress) -> int:
    _print_decision(client.cancel(args.id), args, out)
    return 0


def cmd_list(client: Countersign, args: argparse.Namespace, out: TextIO, progress: Progress) -> int:
    decisions = []
    for decision in client.iter_decisions(status=args.status, page_size=min(args.limit, 200)):
        decisions.append(decision)
        if len(decisions) >= args.limit:
            break
    if args.json:
        out.write(json.dumps([d.raw for d in decisions], indent=2, ensure_ascii=False) + "\n")
        return 0
    for d in decisions:
        created = d.created_at.strftime("%Y-%m-%d %H:%M") if d.created_at else ""
        out.write(f"{d.id}  {d.status:<9}  {created}  {d.action}\n")
    return 0


def cmd_audit_export(client: Countersign, args: argparse.Namespace, out: TextIO, progress: Progress) -> int:
    chunks = client.export_audit_csv(
        start=args.start, end=args.end, decision=args.decision, event=args.event, actor=args.actor
    )
    if args.output:
        with open(args.output, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
    else:
        out.flush()
        binary = out.buffer if hasattr(out, "buffer") else None
        for chunk in chunks:
            if binary is not None:
                binary.write(chunk)
            else:
                out.write(chunk.decode("utf-8"))
        if binary is not None:
            binary.flush()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="countersign",
        description="Ask a person to sign off, by email or Slack, and wait for the answer. "
        "Reads COUNTERSIGN_URL and COUNTERSIGN_API_KEY.",
        epilog="Exit codes (ask, wait): 0 approved, 1 denied, 2 expired or cancelled, 3 error.",
    )
    parser.add_argument(
        "--url", help="Countersign's URL (default: COUNTERSIGN_URL, else http://127.0.0.1:8000)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_json(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument("--json", action="store_true", help="print the decision as JSON")
        return command

    ask = with_json(commands.add_parser("ask", help="ask for sign-off and wait for the answer"))
    ask.add_argument("action", help="what is to be done, in one line")
    ask.add_argument(
        "--approver",
        action="append",
        metavar="ADDRESS",
        help="an email, slack:U123, slack:#channel or group:<name> (repeatable; default: the policy's)",
    )
    ask.add_argument(
        "--detail",
        action="append",
        type=detail,
        metavar="KEY=VALUE",
        help="a fact shown to the approver (repeatable); KEY:=JSON for numbers, true/false, lists",
    )
    ask.add_argument("--context", help="why, shown to the approver")
    ask.add_argument("--timeout", type=minutes, help="how long to wait for an answer: 30m, 2h, 1h30m, 90s")
    ask.add_argument(
        "--on-timeout", choices=["expire", "deny", "approve"], help="the outcome if nobody answers"
    )
    ask.add_argument("--urgency", choices=["low", "normal", "high", "critical"])
    ask.add_argument("--option", action="append", help="a button instead of approve/deny (repeatable)")
    ask.add_argument("--allow-edit", action="store_true", help="the approver may edit the details")
    ask.add_argument("--callback-url", help="also POST the outcome here")
    ask.add_argument(
        "--idempotency-key",
        help="run again with the same key (e.g. the pipeline's id) to wait for the same decision, "
        "not ask twice",
    )
    ask.set_defaults(run=cmd_ask)

    wait = with_json(commands.add_parser("wait", help="wait for a decision's answer"))
    wait.add_argument("id")
    wait.set_defaults(run=cmd_wait)

    get = with_json(commands.add_parser("get", help="show a decision"))
    get.add_argument("id")
    get.add_argument("--wait", type=float, metavar="SECONDS", help="long-poll up to this long (at most 60)")
    get.set_defaults(run=cmd_get)

    cancel = with_json(commands.add_parser("cancel", help="withdraw a pending decision"))
    cancel.add_argument("id")
    cancel.set_defaults(run=cmd_cancel)

    listing = with_json(commands.add_parser("list", help="the newest decisions"))
    listing.add_argument(
        "--status", choices=["pending", "approved", "denied", "responded", "expired", "cancelled"]
    )
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.set_defaults(run=cmd_list)

    audit = commands.add_parser("audit", help="the audit trail (a key with the audit scope)")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    export = audit_commands.add_parser("export", help="the audit trail as CSV")
    export.add_argument(
        "--from", dest="start", metavar="TIME", help="events at or after this time (ISO 8601)"
    )
    export.add_argument("--to", dest="end", metavar="TIME", help="events before this time (ISO 8601)")
    export.add_argument("--decision", help="one decision's events")
    export.add_argument("--event", help="one kind of event, e.g. decision.answered")
    export.add_argument("--actor", help="one actor, e.g. alice@example.com")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    export.set_defaults(run=cmd_audit_export)
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupts.handle)
    signal.signal(signal.SIGINT, _interrupts.handle)
    progress = Progress(sys.stderr)
    try:
        with Countersign(args.url) as client:
            code = args.run(client, args, sys.stdout, progress)
    except errors.CountersignError as exc:
        progress.close()
        fields = exc.fields if isinstance(exc, errors.APIError) else None
        sys.stderr.write(f"countersign: {exc}" + (f" {json.dumps(fields)}" if fields else "") + "\n")
        code = ERROR
    except (KeyboardInterrupt, Terminated):
        progress.close()
        sys.stderr.write("countersign: interrupted\n")
        code = ERROR
    except BrokenPipeError:
        code = ERROR  # e.g. `countersign list | head -1`
    sys.exit(code)


def mcp_main() -> None:
    """`countersign-mcp`, the MCP server over stdio (countersign/mcp.py): a clear word instead of
    a traceback when the `mcp` extra is not installed."""
    try:
        from countersign.mcp import main as serve
    except ImportError as exc:
        sys.exit(f"countersign-mcp: {exc}")
    serve()


if __name__ == "__main__":
    main()
