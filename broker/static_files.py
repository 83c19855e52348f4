"""Static files (/static/…) served in front of Django, for the ASGI app and the WSGI app alike.

servestatic's Django middleware is async-only: under a sync handler Django would adapt it with
async_to_sync on every request, and under ASGI it is one more step of the middleware chain. So
the files are served before Django is reached. The table of files is the middleware's own,
built from Django's settings as it builds it (STATIC_ROOT and the manifest in production; under
DEBUG, the apps' files through the finders, looked up again on each request as they change,
SERVESTATIC_* settings honoured), and only the serving is done here.
"""

from django.conf import settings
from servestatic.asgi import FileServerASGI
from servestatic.middleware import ServeStaticMiddleware
from servestatic.utils import decode_path_info, run_async_in_thread
from servestatic.wsgi import FileServerWSGI


async def _never_called(request):  # pragma: no cover - the middleware only serves files here
    raise AssertionError("static files only")


def _django_static_files() -> ServeStaticMiddleware:
    # The middleware refuses a sync get_response; it is asked for nothing but its files.
    return ServeStaticMiddleware(_never_called, settings=settings)


def _find(files: ServeStaticMiddleware, path: str):
    """The static file at `path`, or None. Under DEBUG files come and go while one develops:
    looked up on disk each time (the ASGI app does it in a thread)."""
    if files.autorefresh:
        return files.find_file(path) if path.startswith(files.static_prefix) else None
    return files.files.get(path)


class StaticFilesASGI:
    """ASGI: a static file answered on the event loop; anything else goes on to `app`."""

    def __init__(self, app) -> None:
        self.app = app
        self.files = _django_static_files()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if self.files.autorefresh:
                found = await run_async_in_thread(_find, self.files, path)
            else:
                found = _find(self.files, path)
            if found:
                return await FileServerASGI(found)(scope, receive, send)
        return await self.app(scope, receive, send)


class StaticFilesWSGI:
    """WSGI (broker/wsgi.py, `manage.py runserver`): a static file, else `app`."""

    def __init__(self, app) -> None:
        self.app = app
        self.files = _django_static_files()

    def __call__(self, environ, start_response):
        found = _find(self.files, decode_path_info(environ.get("PATH_INFO", "")))
        if found:
            return FileServerWSGI(found)(environ, start_response)
        return self.app(environ, start_response)
