"""Reading multipart/form-data uploads within the media limits (Starlette's parser).

The body is streamed through the parser (file parts spool to disk past a megabyte) and cut off
with a 413 once it passes what the allowed images and a report's text can take together.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ioc.api.body import SMALL_BODY_BYTES
from ioc.errors import InvalidInput, MalformedBody, PayloadTooLarge
from ioc.events.validation import media_type
from ioc.media.uploads import Limits, Part

MULTIPART = "multipart/form-data"


def is_multipart(request: Request) -> bool:
    return media_type(request.headers.get("content-type")) == MULTIPART


@dataclass
class Form:
    """A form's text fields and its file parts (images), in order."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[Part] = field(default_factory=list)


def body_limit(limits: Limits) -> int:
    return limits.max_bytes * limits.per_request + SMALL_BODY_BYTES


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes, the most accepted")
        yield chunk


async def read_form(request: Request, limits: Limits, text_parts: Collection[str] = ()) -> Form:
    """The form; a file part named in ``text_parts`` (e.g. a report's JSON sent as a file) is
    read as text, every other file part is an image, named ``field[n]`` in errors."""
    limit = body_limit(limits)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; at most {limit} are accepted")
    parser = MultiPartParser(
        request.headers,
        _limited(request, limit),
        max_files=limits.per_request + len(text_parts) + 1,
        max_fields=100,
        max_part_size=SMALL_BODY_BYTES,
    )
    try:
        parsed = await parser.parse()
    except MultiPartException as exc:
        if "Too many files" in exc.message:
            reason = f"more than {limits.per_request} images; that many are accepted at once"
            raise InvalidInput(f"media: {reason}", [{"field": "media", "reason": reason}]) from None
        raise MalformedBody(f"the multipart form cannot be read: {exc.message}") from None
    form = Form()
    seen: dict[str, int] = {}
    try:
        for name, value in parsed.multi_items():
            if not isinstance(value, UploadFile):
                form.fields[name] = value
                continue
            if name in text_parts:
                text = await value.read()
                try:
                    form.fields[name] = text.decode()
                except UnicodeDecodeError:
                    raise MalformedBody(f"{name}: the part is not UTF-8 text") from None
                continue
            index = seen[name] = seen.get(name, -1) + 1
            part = f"{name}[{index}]"
            size = value.size if value.size is not None else 0
            if size > limits.max_bytes:
                reason = f"the image is {size} bytes; at most {limits.max_bytes} are accepted"
                raise PayloadTooLarge(f"{part}: {reason}", [{"field": part, "reason": reason}])
            form.files.append(Part(part, await value.read()))
    finally:
        await parsed.close()
    return form
