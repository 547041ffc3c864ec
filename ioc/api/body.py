"""Reading request bodies within the configured size limit, and the server's own limits."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ioc.errors import MalformedBody, PayloadTooLarge
from ioc.settings import Settings


def server_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn options that hold WebSocket messages to the documented body limit."""
    return {"ws_max_size": settings.max_body_bytes}


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing early (413) when it is larger than ``limit`` bytes."""
    return bytes(await read_buffer(request, limit))


async def read_buffer(request: Request, limit: int) -> bytearray:
    """The whole body in one buffer (no second copy), refusing early (413) above ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedBody(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; at most {limit} are accepted")
    # One growing buffer: a list of chunks joined at the end would hold the body twice.
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes, the most accepted")
        body += chunk
    return body
