"""The API describes itself: OpenAPI 3 at /openapi.json and interactive docs at /docs, served
entirely from the app (no CDN: the docs must work on an air-gapped install)."""

import re
from html.parser import HTMLParser

from django.contrib.staticfiles import finders

from tests.conftest import client_for


class AssetCollector(HTMLParser):
    """Every URL the page makes the browser fetch: script src, link href, img src."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def docs_assets(html: str) -> list[str]:
    collector = AssetCollector()
    collector.feed(html)
    return collector.urls


def test_openapi_json_is_openapi_3(db):
    response = client_for(None).get("/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]


def test_openapi_lists_the_decision_endpoints(db):
    paths = client_for(None).get("/openapi.json").json()["paths"]

    assert {"/decisions", "/decisions/{decision_id}", "/decisions/{decision_id}/cancel"} <= set(paths)
    assert {"get", "post"} <= set(paths["/decisions"])
    assert "get" in paths["/decisions/{decision_id}"]
    assert "post" in paths["/decisions/{decision_id}/cancel"]


def test_openapi_declares_bearer_auth_on_the_decision_endpoints(db):
    schema = client_for(None).get("/openapi.json").json()

    schemes = schema["components"]["securitySchemes"]
    bearer = [
        name
        for name, scheme in schemes.items()
        if (scheme["type"], scheme.get("scheme")) == ("http", "bearer")
    ]
    assert bearer
    security = schema["paths"]["/decisions"]["post"]["security"]
    assert any(bearer[0] in requirement for requirement in security)


def test_openapi_describes_the_create_body(db):
    """Agents generate clients from this: the contract's fields must be in the request schema."""
    schema = client_for(None).get("/openapi.json").json()

    body = schema["paths"]["/decisions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    ref = body["$ref"].rsplit("/", 1)[-1]
    properties = schema["components"]["schemas"][ref]["properties"]
    for field in ("action", "context", "details", "approver", "approvers", "quorum", "stages", "options"):
        assert field in properties, field
    for field in ("response", "allow_edit", "urgency", "timeout_minutes", "on_timeout", "escalation"):
        assert field in properties, field
    assert "callback_url" in properties
    assert "metadata" in properties


def test_docs_page_is_html(db):
    response = client_for(None).get("/docs")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "/openapi.json" in response.content.decode()


def test_docs_reference_only_same_origin_assets(db):
    html = client_for(None).get("/docs").content.decode()

    assets = docs_assets(html)

    assert any(url.endswith(".js") for url in assets)
    assert any(url.endswith(".css") for url in assets)
    for url in assets:
        assert not re.match(r"^(https?:)?//", url, re.IGNORECASE), url
    # nor any other-host URL hidden in inline script or style
    assert not re.search(r"""["'(]\s*(https?:)?//""", html, re.IGNORECASE)


def test_docs_assets_are_shipped_with_the_app(db):
    """Same-origin is only useful if the files exist: each one is found by staticfiles."""
    html = client_for(None).get("/docs").content.decode()

    for url in docs_assets(html):
        assert url.startswith("/static/"), url
        assert finders.find(url.removeprefix("/static/")), url


def test_openapi_states_what_the_create_endpoint_refuses(db):
    """What the server refuses is in the schema, so that a client (or a fuzzer) built from it
    sends what is taken. tests/test_fuzz_api.py checks the whole of it against the server."""
    schema = client_for(None).get("/openapi.json").json()
    operation = schema["paths"]["/decisions"]["post"]
    body = schema["components"]["schemas"]["DecisionCreateInputRequest"]
    properties = body["properties"]

    assert body["additionalProperties"] is False  # unknown fields are refused
    assert body["required"] == ["action"]
    assert {"required": ["approver", "approvers"]} in body["not"]["anyOf"]
    assert re.fullmatch(properties["action"]["pattern"], "Refund $120")
    assert not re.fullmatch(properties["action"]["pattern"], " \t ")
    address = properties["approver"]["pattern"]
    for ok in ("alice@example.com", "slack:U123ABC", "slack:#ops", "group:finance"):
        assert re.fullmatch(address, ok), ok
    for refused in ("alice", "slack:alice", "group:", "alice@example"):
        assert not re.fullmatch(address, refused), refused
    assert properties["options"]["uniqueItems"] is True
    assert (properties["timeout_minutes"]["minimum"], properties["timeout_minutes"]["exclusiveMinimum"]) == (
        0,
        True,
    )
    assert properties["context"]["pattern"] == "^[^\\x00]*$"
    assert not re.fullmatch(properties["callback_url"]["pattern"], "https://user:pw@example.com/hook")
    (idempotency_key,) = (p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert (idempotency_key["schema"]["minLength"], idempotency_key["schema"]["maxLength"]) == (1, 255)
    (wait,) = (
        p for p in schema["paths"]["/decisions/{decision_id}"]["get"]["parameters"] if p["name"] == "wait"
    )
    assert (wait["schema"]["minimum"], wait["schema"]["maximum"]) == (0, 60)
