"""Reading the caller's API key from a request or a WebSocket handshake."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

from ioc.auth import Principal
from ioc.errors import Unauthenticated


def token_of(conn: HTTPConnection) -> str:
    """The key from ``Authorization: Bearer``, ``X-API-Key``, or an ``api_key`` query parameter."""
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = conn.headers.get("x-api-key") or conn.query_params.get("api_key")
    if not token:
        raise Unauthenticated(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
    return token


Authenticate = Callable[[HTTPConnection], Awaitable[Principal]]
