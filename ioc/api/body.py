"""Reading request bodies within the configured size limit."""

from __future__ import annotations

from starlette.requests import Request

from ioc.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType
from ioc.validation import JSON_TYPES, media_type


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing early (413) when it is larger than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedBody(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes, the most accepted")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> bytes:
    """The body of a JSON endpoint: refused (415) unless sent as application/json, so a form
    or a text/plain post from another page never reaches it."""
    kind = media_type(request.headers.get("content-type"))
    if kind not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"content type {kind or '(none)'!r} is not accepted; send application/json"
        )
    return await read_limited(request, limit)
