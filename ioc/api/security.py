"""Reading the caller's API key from a request or a WebSocket handshake."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

from ioc.auth import Principal
from ioc.errors import Unauthenticated

# The cookie /login sets (HttpOnly, SameSite=Strict): how pages and their scripts authenticate.
COOKIE = "ioc_key"


def token_of(conn: HTTPConnection) -> str:
    """The key from ``Authorization: Bearer``, ``X-API-Key``, an ``api_key`` query parameter,
    or the login cookie (in that order)."""
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = (
        conn.headers.get("x-api-key")
        or conn.query_params.get("api_key")
        or conn.cookies.get(COOKIE)
    )
    if not token:
        raise Unauthenticated(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            " (pages: log in at /login)"
        )
    return token


Authenticate = Callable[[HTTPConnection], Awaitable[Principal]]
