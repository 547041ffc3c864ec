"""paho-mqtt with a buffered socket: packets read from one ``recv`` of many, written in one
``send`` of many.

paho reads a packet with three ``recv`` calls (its first byte, its length byte by byte, the
rest) and writes each packet with its own ``send``: at thousands of small QoS 1 messages a
second (and as many PUBACKs back) those system calls are most of the cost. ``FastClient``
gives paho a socket that reads up to 64 KiB at a time and hands paho the bytes it asks for
from that buffer, and that, while *corked*, gathers paho's packets and sends them together
when uncorked (so a batch's acknowledgements leave in one write).

The caller must know that bytes may wait in the buffer where the selector cannot see them:
``buffered()`` says so, and read again until it is false. Written bytes that the kernel did
not take yet wait in ``unsent()``; ``flush()`` tries them again.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any, cast

import paho.mqtt.client as paho

_READ = 65_536
_BLOCKED = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class BufferedSocket:
    """A connected (plain or TLS) socket with a read buffer and a corkable write buffer."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self._sock = sock
        self._data = b""
        self._at = 0
        self._out = bytearray()
        self._corked = False

    # --- what paho calls -----------------------------------------------------------------

    def recv(self, size: int) -> bytes:
        if self._at < len(self._data):
            chunk = self._data[self._at : self._at + size]
            self._at += len(chunk)
            return chunk
        data = self._sock.recv(max(size, _READ))  # BlockingIOError etc. go to paho
        if len(data) <= size:
            self._data, self._at = b"", 0
            return data
        self._data, self._at = data, size
        return data[:size]

    def send(self, buffer: bytes | bytearray) -> int:
        if self._corked or self._out:
            self._out += buffer
            if not self._corked:
                self.flush()
            return len(buffer)
        return self._sock.send(buffer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.flush()
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def pending(self) -> int:
        """Bytes read but not handed to paho yet (paho asks a TLS socket this)."""
        inside = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return len(self._data) - self._at + inside

    def __getattr__(self, name: str) -> Any:  # e.g. getpeercert
        return getattr(self._sock, name)

    # --- what the caller uses ------------------------------------------------------------

    def buffered(self) -> bool:
        """True while bytes wait that the selector will not report: read again."""
        return self.pending() > 0

    def unsent(self) -> int:
        return len(self._out)

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Gather what paho sends inside the block; send it together at the end."""
        self._corked = True
        try:
            yield
        finally:
            self._corked = False
            self.flush()

    def flush(self) -> bool:
        """Send what waits; True when nothing is left (else the kernel's buffer is full)."""
        while self._out:
            try:
                sent = self._sock.send(self._out)
            except _BLOCKED:
                return False
            del self._out[:sent]
        return True


class FastClient(paho.Client):
    """A paho client whose socket is a ``BufferedSocket``, and that hands each message straight
    to ``on_message`` while no per-topic callback is registered (paho would first look the
    topic up in its tree of such callbacks: a closure and a generator a message, in a cycle
    that only the cyclic garbage collector frees; a third of the subscriber's time)."""

    _filtered = False

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        on_message = self.on_message
        if self._filtered or on_message is None:
            super()._handle_on_message(message)
        else:
            on_message(self, self._userdata, message)

    def _create_socket(self) -> Any:
        return BufferedSocket(cast(socket.socket, super()._create_socket()))

    @property
    def buffered_socket(self) -> BufferedSocket | None:
        sock = self.socket()
        return sock if isinstance(sock, BufferedSocket) else None
