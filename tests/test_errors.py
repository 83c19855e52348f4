"""Errors outside any one endpoint's validation: unknown URLs, oversized bodies, wrong
methods. Every one is JSON in the contract's shape, also where Django, not DRF, answers.
(pytest-django runs with DEBUG off, so these are the production handlers.)"""

import json

import pytest
from django.conf import settings

from decisions.models import Decision
from tests.conftest import ALICE, client_for

MIB = 1024 * 1024


def assert_error(response, *, status: int, code: str):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    assert error["message"]


class UnreadableBody:
    """A request body that fails the test if anybody reads it."""

    def read(self, *args, **kwargs):
        raise AssertionError("the body was read")

    readline = read


def test_debug_is_off_in_tests():
    """The JSON 404/500 handlers only apply with DEBUG off; these tests rely on it."""
    assert settings.DEBUG is False


@pytest.mark.parametrize("path", ["/nope", "/decisions/", "/api/decisions", "/decisions/dec_abc/approve"])
def test_unknown_url_is_404_json(api, path):
    assert_error(api.get(path), status=404, code="not_found")


def test_unknown_url_is_404_json_without_a_key(db):
    assert_error(client_for(None).get("/wp-login.php"), status=404, code="not_found")


def test_post_to_unknown_url_is_404_json(api):
    assert_error(api.post("/decision", {"action": "x"}, format="json"), status=404, code="not_found")


def test_an_unknown_url_says_what_was_asked_and_where_the_api_is(api):
    message = api.post("/decision", {"action": "x"}, format="json").json()["error"]["message"]

    assert message == "Nothing at POST /decision. The API is described at /docs."


def test_under_debug_an_unknown_api_url_is_still_the_json_404_not_a_list_of_every_url(api, settings):
    # `make dev` runs with DEBUG on, where Django's own 404 page lists every URL pattern
    settings.DEBUG = True

    response = api.get("/decisons")

    assert_error(response, status=404, code="not_found")
    assert response.json()["error"]["message"] == "Nothing at GET /decisons. The API is described at /docs."
    assert b"URLconf" not in response.content


def test_under_debug_the_admin_keeps_its_html_404(admin_client, settings):
    settings.DEBUG = True

    response = admin_client.get("/admin/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("length", [MIB + 1, 5 * MIB, 10**12], ids=["1MiB+1", "5MB", "1TB"])
def test_declared_body_over_1_mib_is_413_before_it_is_read(api, length):
    """A client announcing a huge body is turned away at once: the server neither reads nor
    buffers it (the body here fails the test if anything touches it)."""
    response = api.generic(
        "POST",
        "/decisions",
        b"{}",
        content_type="application/json",
        CONTENT_LENGTH=str(length),
        **{"wsgi.input": UnreadableBody()},
    )

    assert_error(response, status=413, code="payload_too_large")
    assert Decision.objects.count() == 0


def test_body_over_1_mib_is_413_on_any_url(db):
    response = client_for(None).generic(
        "POST", "/anything", b"x", content_type="text/plain", CONTENT_LENGTH=str(2 * MIB)
    )

    assert_error(response, status=413, code="payload_too_large")


def test_non_numeric_content_length_is_400(api):
    response = api.generic(
        "POST", "/decisions", b"{}", content_type="application/json", CONTENT_LENGTH="lots"
    )

    assert_error(response, status=400, code="bad_request")


def test_negative_content_length_is_not_a_crash(api):
    response = api.generic("POST", "/decisions", b"{}", content_type="application/json", CONTENT_LENGTH="-1")

    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "fields"}
    assert Decision.objects.count() == 0


def test_body_of_exactly_1_mib_is_accepted(api):
    """The limit is "larger than 1 MiB": a request of exactly 1 MiB is not refused for its size."""
    head = json.dumps({"action": "Import ledger", "approver": ALICE, "details": {"pad": ""}})[:-3]
    payload = (head + "a" * (MIB - len(head) - 3) + '"}}').encode()
    assert len(payload) == MIB

    response = api.generic("POST", "/decisions", payload, content_type="application/json")

    assert response.status_code == 201
    assert Decision.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/decisions"),
        ("patch", "/decisions"),
        ("delete", "/decisions"),
        ("post", "/decisions/{id}"),
        ("put", "/decisions/{id}"),
        ("delete", "/decisions/{id}"),
    ],
)
def test_wrong_method_is_405_json(api, method, path):
    decision_id = api.post("/decisions", {"action": "Refund", "approver": ALICE}, format="json").json()["id"]

    response = getattr(api, method)(path.format(id=decision_id))

    assert_error(response, status=405, code="method_not_allowed")
    assert response["Allow"]
    assert Decision.objects.get(pk=decision_id).status == "pending"
