"""The short way to the busiest endpoint: ``POST /v1/events`` with one JSON event.

Sensors and field apps post single events by the thousand a second. Through the framework each
one is matched against every route, has the app-wide parameter check resolved as a dependency
and passes several request wrappers: most of the server's CPU per request. This middleware
hands exactly those requests to the endpoint's own handler (``ingest.answer_one``, which holds
every rule: authentication and its throttle, media type, body limit, decoding, storing) and
maps what it raises with the app's own exception handlers (``errors.install``), as the router
would. It sits where the framework puts user middleware: inside the server-error handler, so an
unexpected failure is answered as on any route.

Everything else goes the normal way, and so do the rare requests to this endpoint that could be
answered differently there: one with a query string (the app-wide check reads it), a multipart
post (a report with photos), a mounted ``root_path``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ioc.api.uploads import MULTIPART
from ioc.events.validation import media_type

# The endpoint's path and method (the route keeps declaring them for the document; a test
# checks the two agree).
PATH: Final = "/v1/events"
METHOD: Final = "POST"

Handler = Callable[[Request], Awaitable[Response]]


def takes_short_way(scope: Scope) -> bool:
    """Whether this request is one the fast path answers (see the module's docstring)."""
    return (
        scope["type"] == "http"
        and scope["path"] == PATH
        and scope["method"] == METHOD
        and not scope.get("query_string")
        and not scope.get("root_path")
        and media_type(_content_type(scope)) != MULTIPART
    )


def _content_type(scope: Scope) -> str | None:
    """The request's Content-Type, read as ``Request.headers`` reads it (the first one), without
    building the request (this runs for every request)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


class FastIngest:
    """ASGI middleware: single JSON events straight to ``handle``; the rest to ``app``.

    ``handlers`` are the app's exception handlers (``FastAPI.exception_handlers``), read when
    the framework builds its middleware at the first request; the 500 handler stays with the
    server-error middleware outside, as the framework arranges it.
    """

    def __init__(self, app: ASGIApp, handle: Handler, handlers: Mapping[Any, Any]) -> None:
        self.app = app
        self._handle = handle
        mapped = {key: value for key, value in handlers.items() if key not in (500, Exception)}
        self._answer = ExceptionMiddleware(self._endpoint, handlers=mapped)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if takes_short_way(scope):
            await self._answer(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handle(Request(scope, receive, send))
        await response(scope, receive, send)
