"""Checking an archived CSV export (audit/export.py) on its own, without the database.

Every row carries what its hashes cover (organization_id, time, decision_id, event, actor,
channel, payload; then seq and prev_hash) and the hash itself: recomputing each hash, and
checking that each row's prev_hash is the hash of the row before it, proves that no row of
the file was edited, inserted, removed or reordered. Comparing the hash at a checkpoint's
size with the checkpoint's signed head hash (audit/checkpoints.py) proves the file is the
chain the service sealed, not one recomputed after an edit.
"""

import contextlib
import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from audit.chain import GENESIS_HASH, content_hash, link_hash
from audit.checkpoints import VerifiedCheckpoint
from audit.export import BOM, EXPORT_COLUMNS, PAYLOAD_COLUMNS, payload_cells, restore_cell

REQUIRED: tuple[str, ...] = ("time", "decision_id", "event", "actor", "channel", "prev_hash", "hash", "seq")
REQUIRED += ("organization_id", "payload")


@dataclass
class ChainSpan:
    """What the file holds of one organization's chain."""

    organization: str
    first_seq: int
    first_prev_hash: str
    last_seq: int = 0
    last_hash: str = ""
    events: int = 0


MAX_PROBLEMS_KEPT = 1000


@dataclass
class ArchiveReport:
    spans: dict[int, ChainSpan] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # the first MAX_PROBLEMS_KEPT
    problem_count: int = 0
    checkpoints_checked: int = 0

    def add(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as file:
        if file.read(1) != BOM:
            file.seek(0)
        reader = csv.DictReader(file)
        missing = [column for column in REQUIRED if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"not an audit export: no column {', '.join(missing)} (expected {EXPORT_COLUMNS})"
            )
        for line, row in enumerate(reader, start=2):
            yield line, {name: restore_cell(value or "") for name, value in row.items() if name}


def check_archive(path: Path, *, checkpoints: Sequence[VerifiedCheckpoint] = ()) -> ArchiveReport:
    """Walk the file once and report every break (memory: one action per decision, never the
    rows), and every verified checkpoint the file's chain disagrees with. Raises ValueError
    for a file that is not an audit export at all."""
    report = ArchiveReport()
    signed = {(c.organization_id, c.size): c for c in checkpoints}
    actions: dict[str, str] = {}  # decision id -> the action its decision.created event states
    for line, row in _rows(path):
        try:
            organization_id, seq = int(row["organization_id"]), int(row["seq"])
            created_at = datetime.fromisoformat(row["time"].replace("Z", "+00:00"))
        except ValueError:
            report.add(f"line {line}: unreadable seq, organization_id or time")
            continue
        span = report.spans.get(organization_id)
        if span is None:
            span = report.spans[organization_id] = ChainSpan(
                row.get("organization", ""), seq, row["prev_hash"]
            )
            if seq == 1 and row["prev_hash"] != GENESIS_HASH:
                report.add(f"line {line}: event #1 does not start the chain")
        else:
            if seq != span.last_seq + 1:
                report.add(
                    f"line {line}: organization {organization_id}: expected event #{span.last_seq + 1}, "
                    f"found #{seq}: rows were removed, inserted or reordered"
                )
            if row["prev_hash"] != span.last_hash:
                report.add(
                    f"line {line}: organization {organization_id}, event #{seq}: prev_hash does not "
                    "match the previous row's hash"
                )
        content = content_hash(
            organization_id=organization_id,
            created_at=created_at,
            decision_id=row["decision_id"] or None,
            event=row["event"],
            actor=row["actor"],
            channel=row["channel"],
            payload=row["payload"],
        )
        recomputed = link_hash(prev_hash=row["prev_hash"], seq=seq, content_hash=content)
        if recomputed != row["hash"] or row.get("content_hash", content) != content:
            report.add(
                f"line {line}: organization {organization_id}, event #{seq}: content does not match "
                "its hash: the row was altered"
            )
        checkpoint = signed.get((organization_id, seq))
        if checkpoint is not None:
            report.checkpoints_checked += 1
            if checkpoint.head_hash != row["hash"]:
                report.add(
                    f"line {line}: organization {organization_id}, event #{seq}: the chain disagrees with "
                    f"the checkpoint of #{seq} signed at {checkpoint.sealed_at}: "
                    "the file is not the sealed chain"
                )
        span.last_seq, span.last_hash, span.events = seq, row["hash"], span.events + 1
        _check_readable_cells(report, line, row, actions)
    return report


def _check_readable_cells(report: ArchiveReport, line: int, row: dict[str, str], actions: dict) -> None:
    """The readable columns repeat what the hashed payload says: they must agree with it, or
    someone edited the file's cells without touching the payload."""
    derived = dict(zip(PAYLOAD_COLUMNS, payload_cells(row["payload"]), strict=True))
    for column, value in derived.items():
        if column in row and row[column] != value:
            report.add(f"line {line}: {column} does not match the event's payload")
    decision_id, action = row["decision_id"], row.get("action")
    if row["event"] == "decision.created" and decision_id:
        # An unreadable payload has already been reported by the hash check.
        with contextlib.suppress(ValueError, AttributeError):
            actions[decision_id] = json.loads(row["payload"]).get("action")
    if action is not None and decision_id in actions and actions[decision_id] != action:
        report.add(f"line {line}: action does not match the decision's decision.created event")
