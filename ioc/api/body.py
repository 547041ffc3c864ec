"""Reading request bodies within the configured size limit, and the server's own limits."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Collection
from typing import Any

from starlette.requests import Request

from ioc.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType
from ioc.events.validation import media_type
from ioc.settings import Settings

# The most the endpoints that take small bodies (a ticket action, a silence, an Open311 service
# request) can need: an Open311 form at every field's limit, percent-encoded four-byte characters
# throughout, is under 80 KiB. A larger body is refused (413) before it is read, so the event
# loop never decodes a large body that such an endpoint could not use.
SMALL_BODY_BYTES = 128 * 1024

# Bodies at least this large hand their memory back to the system once answered.
LARGE_BODY_BYTES = 4 * 1024 * 1024

_libc_name = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_libc_name) if _libc_name else None
_malloc_trim = getattr(_libc, "malloc_trim", None)
_mallopt = getattr(_libc, "mallopt", None)
_M_MMAP_THRESHOLD = -3
# Allocations this large get pages of their own, handed back to the system when freed.
MMAP_THRESHOLD_BYTES = 1024 * 1024


def hand_back_large_buffers() -> None:
    """Keep buffers of a megabyte or more out of the heap (process-wide, glibc only).

    glibc raises its threshold for this after a large buffer is freed (up to 32 MiB), so the
    next bodies and copies of a body would be carved from the heap and stay in RSS after use.
    A fixed threshold turns that adjustment off.
    """
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_memory() -> None:
    """Return freed heap memory to the system (glibc keeps it otherwise, per thread arena).

    After a large body is answered, its buffers are free but stay in the process: each worker
    thread's arena keeps its high-water mark, and RSS would creep up with every large request.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


# How long a worker thread may hold the GIL while the event loop waits for it (CPython's
# default is 5 ms). A request on the loop waits this long at each turn of the loop while a large
# body is decoded in a worker thread; 1 ms keeps those waits small.
GIL_SWITCH_INTERVAL_S = 0.001


def favour_the_event_loop() -> None:
    """Let the event loop take the GIL back from worker threads sooner (process-wide)."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Exempt what is alive once the server has started from the cyclic garbage collector
    (once per process).

    A full collection walks every tracked object while holding the GIL. The libraries loaded at
    start-up are most of them (about 130,000), and the objects a large batch makes while it is
    decoded in a worker thread trigger such collections: each held the event loop 100-400 ms
    (``ioc bench hostile``). Frozen, they are no longer walked; they stay alive as before.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def server_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn options that hold WebSocket messages to the documented body limit.

    Per-message compression is off: the server inflates a compressed message on the event
    loop in one call, and a few kilobytes on the wire inflate to a full-size message, so one
    gateway could stall every other request.
    """
    return {"ws_max_size": settings.max_body_bytes, "ws_per_message_deflate": False}


async def read_body(
    request: Request, limit: int, accept: Collection[str] | None = None
) -> bytes | bytearray:
    """The whole body, refused early (413) when it is larger than ``limit`` bytes and, with
    ``accept``, refused (415) unless its media type is one of those (JSON endpoints pass
    ``JSON_TYPES``, so a form or a text/plain post from another page never reaches them).

    The body is never held twice: one that arrives in one piece is returned as the server
    handed it over (no copy), a longer one is gathered in one growing buffer (a list of chunks
    joined at the end, or a ``bytes`` copy of the buffer, would hold it twice and stall the
    event loop while the copy is made). Decoders read either kind.
    """
    if accept is not None:
        kind = media_type(request.headers.get("content-type"))
        if kind not in accept:
            raise UnsupportedMediaType(
                f"content type {kind or '(none)'!r} is not accepted; send "
                + " or ".join(sorted(accept))
            )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedBody(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; at most {limit} are accepted")
    first = b""
    gathered: bytearray | None = None
    size = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes, the most accepted")
        if gathered is not None:
            gathered += chunk
        elif first:
            gathered = bytearray(first)
            gathered += chunk
            first = b""
        else:
            first = chunk
    return first if gathered is None else gathered
