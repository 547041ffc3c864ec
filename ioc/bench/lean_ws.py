"""A lean websocket client for benchmarks that hold hundreds of listening sockets.

The clients share the server's machine, so every microsecond they spend is taken from the
server being measured. The ``websockets`` client costs tens of microseconds of Python per frame
received; with 500 sockets that made the listening process the largest CPU user in
``ioc bench live``. This one does the whole protocol a listening client needs (RFC 6455): the
opening handshake with its accept check, text frames (fragmented or not) handed over whole,
pings answered with pongs, and the closing handshake, on a plain asyncio protocol. It sends
nothing else and never compresses (the platform's feeds do not offer compression).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask what they send), FIN set; control payloads only."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


class LeanSocket(asyncio.Protocol):
    """One listening connection. ``on_text`` gets each whole text message; ``closed`` resolves
    to the close code (1006 when the connection ended without a closing handshake)."""

    def __init__(self, host: str, path: str, on_text: Callable[[bytes], None]) -> None:
        self._key = base64.b64encode(os.urandom(16))
        self._request = (
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            ).encode()
            + b"Sec-WebSocket-Key: "
            + self._key
            + b"\r\n\r\n"
        )
        self._on_text = on_text
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._open = False
        self._parts: list[bytes] = []
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[tuple[int, str]] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result((1006, str(exc or "")))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._open and not self._handshake():
            return
        self._frames()

    def _handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if head[0].split(" ")[1:2] != ["101"] or fields.get("sec-websocket-accept") != expected:
            self.opened.set_exception(ConnectionError(f"handshake refused: {head[0]}"))
            self.close_now()
            return False
        self._open = True
        self.opened.set_result(None)
        return True

    def _frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, start = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                (length,), start = struct.unpack_from("!H", buffer, 2), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                (length,), start = struct.unpack_from("!Q", buffer, 2), 10
            if second & 0x80:  # servers never mask: a protocol error
                self.close(1002, "masked frame from the server")
                return
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            self._frame(first & 0x80 != 0, first & 0x0F, payload)

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode in (_TEXT, _BINARY, _CONTINUATION):
            self._parts.append(payload)
            if fin:
                whole = b"".join(self._parts)
                self._parts = []
                self._on_text(whole)
        elif opcode == _PING:
            self._write(_masked(_PONG, payload))
        elif opcode == _CLOSE:
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
            if not self.closed.done():
                self.closed.set_result((code, payload[2:].decode("utf-8", "replace")))
            self._write(_masked(_CLOSE, payload[:2]))
            self.close_now()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the server answers and closes the connection."""
        self._write(_masked(_CLOSE, struct.pack("!H", code) + reason.encode()[:120]))

    def close_now(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def connect_lean(url: str, on_text: Callable[[bytes], None]) -> LeanSocket:
    """Open a listening websocket to ``url`` (ws://host:port/path?query)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    _, socket = await loop.create_connection(
        lambda: LeanSocket(parts.netloc, path, on_text),
        parts.hostname or "127.0.0.1",
        parts.port or 80,
    )
    await socket.opened
    return socket
