"""The audit trail as CSV: one row per event, streamed in constant memory, safe to open in a
spreadsheet, and complete enough to re-verify the hash chain from the file alone.

Columns (EXPORT_COLUMNS): time (UTC, ISO 8601, microseconds), organization (slug), decision_id,
action (the decision's), event, actor, channel; choice, note, ip, user_agent (from the event's
payload, where it has them); prev_hash, hash; then seq, organization_id, payload (the exact
canonical JSON the hash covers) and content_hash: with those `verify_audit --archive`
recomputes every hash from the file, and compares the chain with signed checkpoints
(docs/RETENTION.md).

Spreadsheet safety: the file starts with a UTF-8 byte order mark (Excel otherwise reads it as
Windows-1252), and any cell that begins with = + - @ (or their fullwidth forms), whitespace
(space, tab, CR, LF), NUL or ' gets one extra ' in front, so no cell is ever taken for a
formula. Removing exactly one leading ' from a
cell that has one gives the original back (restore_cell).

Streaming: rows are read in keyset batches of 2 000 (audit_event_batches) and each batch is
formatted into one chunk, so memory holds a batch, never the file. Under ASGI (uvicorn) the
response must be an async iterator: Django reads a synchronous one to its end into memory
before sending a byte. `make bench-export` measures a million rows.
"""

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.db.models import CharField, Func, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from audit.models import AuditEvent
from audit.selectors import audit_event_batches
from broker.canonical import canonical_json

EXPORT_COLUMNS = (
    "time",
    "organization",
    "decision_id",
    "action",
    "event",
    "actor",
    "channel",
    "choice",
    "note",
    "ip",
    "user_agent",
    "prev_hash",
    "hash",
    "seq",
    "organization_id",
    "payload",
    "content_hash",
)
PAYLOAD_COLUMNS = ("choice", "note", "ip", "user_agent")
BOM = "\ufeff"
CONTENT_TYPE = "text/csv; charset=utf-8"

# What one query fetches per event; the organization's slug is looked up once, not joined.
_FIELDS = (
    "created_at",
    "organization_id",
    "decision_id",
    "decision__action",
    "event",
    "actor",
    "channel",
    "payload",
    "prev_hash",
    "hash",
    "seq",
    "content_hash",
)
# Spreadsheets evaluate cells starting with = + - @ or their fullwidth forms (U+FF1D, U+FF0B,
# U+FF0D, U+FF20, read as ASCII by some), and whatever follows leading whitespace or a NUL
# (OWASP CSV Injection, ASVS 5.0 1.2.10); ' is escaped too so that the escape can always be undone.
_ESCAPED_STARTS = frozenset("=+-@\t\r\n \x00\uff1d\uff0b\uff0d\uff20'")


def neutralise_cell(value: str) -> str:
    return "'" + value if value[:1] in _ESCAPED_STARTS else value


def restore_cell(value: str) -> str:
    return value[1:] if value.startswith("'") else value


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _UtcIsoText(Func):
    """A time as the export writes it, formatted by PostgreSQL: parsing a timestamp into a
    Python datetime (Django's time zone loader runs in Python) and formatting it again costs
    more than all the rest of a row."""

    output_field = CharField()
    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def _text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else canonical_json(value)


_NO_PAYLOAD_CELLS = ("", "", "", "")


def payload_cells(payload: str) -> tuple[str, ...]:
    # Most events carry none of these keys: their JSON is not even parsed.
    if not ('"choice"' in payload or '"note"' in payload or '"ip"' in payload or '"user_agent"' in payload):
        return _NO_PAYLOAD_CELLS
    try:
        facts = json.loads(payload)
    except ValueError:
        return _NO_PAYLOAD_CELLS  # an altered row: verify_audit reports it, the export goes on
    if not isinstance(facts, dict):
        return _NO_PAYLOAD_CELLS
    return tuple(_text(facts.get(key)) for key in PAYLOAD_COLUMNS)


def export_row(values: tuple, slugs: dict[int, str]) -> list[str]:
    (
        created_at,
        organization_id,
        decision_id,
        action,
        event,
        actor,
        channel,
        payload,
        prev,
        digest,
        seq,
        content,
    ) = values
    cells = [
        created_at if isinstance(created_at, str) else format_time(created_at),
        slugs.get(organization_id, ""),
        decision_id or "",
        action or "",
        event,
        actor,
        channel,
        *payload_cells(payload),
        prev,
        digest,
        str(seq),
        str(organization_id),
        payload,
        content,
    ]
    # Inline rather than neutralise_cell(): this runs 16 million times for a million rows.
    return [("'" + cell) if cell[:1] in _ESCAPED_STARTS else cell for cell in cells]


def header_row(columns) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(columns)
    return (BOM + buffer.getvalue()).encode()


def header() -> bytes:
    return header_row(EXPORT_COLUMNS)


def encode_rows(rows: Iterable[list[str]]) -> bytes:
    """CSV lines as csv.writer writes them (RFC 4180: a cell holding a comma, a double quote,
    CR or LF is put in double quotes, its quotes doubled; CRLF line ends), three times faster:
    at a million rows csv.writer alone took longer than the whole target. Tests hold the two
    equal."""
    lines = [
        ",".join(
            [
                ('"' + cell.replace('"', '""') + '"')
                if ('"' in cell or "," in cell or "\n" in cell or "\r" in cell)
                else cell
                for cell in row
            ]
        )
        for row in rows
    ]
    lines.append("")  # the last line ends with CRLF too
    return "\r\n".join(lines).encode()


def _encode(batch: list[tuple], slugs: dict[int, str]) -> bytes:
    return encode_rows([export_row(values, slugs) for values in batch])


def export_chunks(events: QuerySet[AuditEvent], *, slugs: dict[int, str]) -> Iterator[bytes]:
    """The CSV file in pieces of one batch (2 000 rows) each, header first: memory holds one
    batch, never the file."""
    yield header()
    fields = _FIELDS
    if connections[events.db].vendor == "postgresql":
        events = events.annotate(export_time=_UtcIsoText("created_at"))
        fields = ("export_time", *_FIELDS[1:])
    for batch in audit_event_batches(events, organization_ids=sorted(slugs), fields=fields):
        yield _encode(batch, slugs)


async def _chunks_async(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    # Under ASGI Django would read a synchronous iterator to its end into memory before
    # sending a byte. Each batch is fetched and formatted in the request's sync thread (the
    # same one for every batch), and the event loop only sends.
    next_chunk = sync_to_async(next)
    while (chunk := await next_chunk(chunks, None)) is not None:  # type: ignore[call-arg]  # next(it, default)
        yield chunk


def csv_download(request: HttpRequest, chunks: Iterator[bytes], *, filename: str) -> StreamingHttpResponse:
    """A streamed CSV download of `chunks`, asynchronous under ASGI."""
    content: Iterable[bytes] | AsyncIterator[bytes] = chunks
    if isinstance(getattr(request, "_request", request), ASGIRequest):
        content = _chunks_async(chunks)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingHttpResponse(
        content,
        content_type=CONTENT_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


def export_response(
    request: HttpRequest, events: QuerySet[AuditEvent], *, slugs: dict[int, str], name: str
) -> StreamingHttpResponse:
    """The events as a streamed CSV download. `slugs` maps the id of every organization to
    export to its slug; rows come organization by organization, each in chain order."""
    return csv_download(request, export_chunks(events, slugs=slugs), filename=f"audit-{name}")
