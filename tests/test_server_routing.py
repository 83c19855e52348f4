"""broker/asgi.py: which requests go where (the long-poll to Django's ASGI handler, everything
else to its WSGI handler), and static files served in front of Django (broker/static_files.py),
under ASGI and WSGI, from STATIC_ROOT and, with DEBUG, from the apps' folders."""

import httpx
import pytest
from django.test import override_settings

from broker.asgi import is_long_poll
from broker.static_files import StaticFilesASGI, StaticFilesWSGI
from tests.helpers import serving

# serving() polls with wait_for, which tidies this thread's database connection as it waits.
SERVED = pytest.mark.django_db

DECISION = "/decisions/dec_01jq0000000000000000000000"


def scope(method: str, path: str, query: bytes = b"") -> dict:
    return {"type": "http", "method": method, "path": path, "query_string": query}


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [("GET", DECISION, b"wait=30"), ("GET", DECISION, b"wait="), ("GET", DECISION, b"x=1&wait=abc")],
)
def test_a_get_of_one_decision_with_a_wait_is_the_long_poll(method, path, query):
    assert is_long_poll(scope(method, path, query))


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", DECISION, b""),
        ("GET", DECISION, b"waiting=1"),
        ("POST", DECISION, b"wait=30"),
        ("GET", DECISION + "/cancel", b"wait=30"),
        ("GET", "/decisions", b"wait=30"),
        ("GET", "/decisions/not-an-id", b"wait=30"),
    ],
)
def test_anything_else_is_not(method, path, query):
    assert not is_long_poll(scope(method, path, query))


async def teapot(scope, receive, send):
    """What stands behind the static files in these tests: Django, for everything else."""
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"django"})


@SERVED
def test_a_collected_file_is_served_before_django_and_the_rest_reaches_it(tmp_path):
    # given: a file in STATIC_ROOT, as collectstatic leaves it in production
    (tmp_path / "site.css").write_text("body { color: teal }")
    with override_settings(DEBUG=False, STATIC_ROOT=str(tmp_path)):
        app = StaticFilesASGI(teapot)

    with serving(app) as url:
        css = httpx.get(f"{url}/static/site.css")
        other = httpx.get(f"{url}/decisions")
        missing = httpx.get(f"{url}/static/nothing.css")

    assert css.status_code == 200
    assert css.text == "body { color: teal }"
    assert css.headers["content-type"].startswith("text/css")
    assert (other.status_code, other.text) == (418, "django")
    assert missing.status_code == 418


@SERVED
def test_with_debug_an_apps_file_is_served_without_collectstatic(tmp_path):
    with override_settings(DEBUG=True, STATIC_ROOT=str(tmp_path)):
        app = StaticFilesASGI(teapot)

        with serving(app) as url:
            css = httpx.get(f"{url}/static/admin/css/base.css")

    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def test_under_wsgi_too(tmp_path):
    (tmp_path / "site.js").write_text("console.log(1)")

    def django(environ, start_response):
        start_response("418 I'm a teapot", [])
        return [b"django"]

    with override_settings(DEBUG=False, STATIC_ROOT=str(tmp_path)):
        app = StaticFilesWSGI(django)

    def get(path: str) -> tuple[str, bytes]:
        started: list[str] = []
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": ""}
        body = b"".join(app(environ, lambda status, headers, exc_info=None: started.append(status)))
        return started[0], body

    assert get("/static/site.js") == ("200 OK", b"console.log(1)")
    assert get("/decisions") == ("418 I'm a teapot", b"django")
