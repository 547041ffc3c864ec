"""Live frames written straight to the connection, framed once for every subscriber.

A round's frames are the same text for all the subscribers of a filter (``ioc.frames``,
``Subscription.frames``). Through the ASGI interface every socket would frame and send its own
copy: the WebSocket wrapper, the framework's send wrappers and the WebSocket library's framing,
about a tenth of the server's CPU with 500 clients on the live map. When the server is uvicorn's
sans-I/O WebSocket protocol (its default), ``WireCapture`` keeps that protocol in the
connection's scope, and ``frame_sender`` writes each frame's bytes, built once (``text_frame``),
to the connection's transport: after waiting as uvicorn does while the transport's buffer is
full, and only while the connection is open on both sides. Anything else (another server or
protocol, a closing connection) goes through the ASGI send, which answers as it always did.

Frames go out unmasked and uncompressed, as RFC 6455 has servers send them; per-message
compression is off on this server (``body.server_limits``).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, Final

from fastapi import WebSocket
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.protocol import State

_SCOPE_KEY: Final = "ioc.wire"
# What the protocol object must have for frames to be written past it (uvicorn's
# WebSocketsSansIOProtocol); without all of them the ASGI send is used.
_FIELDS: Final = ("transport", "conn", "writable", "disconnected", "close_sent")
_TEXT: Final = 0x81  # FIN and the text opcode


class WireCapture:
    """ASGI middleware: for a WebSocket, keeps the server's protocol in the scope when frames
    can be written to its transport (the framework wraps ``send`` further in)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            protocol = getattr(send, "__self__", None)
            if protocol is not None and all(hasattr(protocol, f) for f in _FIELDS):
                scope[_SCOPE_KEY] = protocol
        await self.app(scope, receive, send)


@lru_cache(maxsize=64)
def text_frame(text: str) -> bytes:
    """A whole server-to-client text frame carrying ``text`` (a round's few frames are each
    built once, then found here by the subscribers that send the same text)."""
    data = text.encode()
    size = len(data)
    if size < 126:
        head = struct.pack("!BB", _TEXT, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", _TEXT, 126, size)
    else:
        head = struct.pack("!BBQ", _TEXT, 127, size)
    return head + data


def frame_sender(socket: WebSocket) -> Callable[[str], Awaitable[None]]:
    """How to send ``socket`` a text frame: to its transport when ``WireCapture`` found the
    protocol, else ``socket.send_text``."""
    protocol = socket.scope.get(_SCOPE_KEY)
    if protocol is None:
        return socket.send_text

    async def send(text: str) -> None:
        if not protocol.writable.is_set():  # the transport's buffer is full: wait, as uvicorn does
            await protocol.writable.wait()
        if _open(protocol):
            protocol.transport.write(text_frame(text))
        else:  # closing or gone: the ASGI send says so as it always has
            await socket.send_text(text)

    return send


def _open(protocol: Any) -> bool:
    return (
        not protocol.disconnected
        and not protocol.close_sent
        and protocol.conn.state is State.OPEN
        and not protocol.transport.is_closing()
    )
