"""paho-mqtt with a buffered socket: packets read from one ``recv`` of many, written in one
``send`` of many.

paho reads a packet with three ``recv`` calls (its first byte, its length byte by byte, the
rest) and writes each packet with its own ``send``: at thousands of small QoS 1 messages a
second (and as many PUBACKs back) those system calls are most of the cost. ``FastClient``
gives paho a socket that reads up to 64 KiB at a time and hands paho the bytes it asks for
from that buffer, and that, while *corked*, gathers paho's packets and sends them together
when uncorked (so a batch's acknowledgements leave in one write). Even from a buffer, paho's
way costs about 35 µs of CPU a message (its read state kept in a dict, a decoder returning a
named tuple, a message object holding a lock): ``FastClient`` takes each whole PUBLISH of the
kind the subscriber receives straight from the buffer, and queues a batch's PUBACKs as one
piece (about 7 µs a message together), leaving every other packet to paho.

The caller must know that bytes may wait in the buffer where the selector cannot see them:
``buffered()`` says so, and read again until it is false. Written bytes that the kernel did
not take yet wait in ``unsent()``; ``flush()`` tries them again.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Iterator, Sequence
from typing import Any, cast

import paho.mqtt.client as paho

_READ = 65_536
_PUBLISH_QOS_0_1 = (0x30, 0x32)  # a PUBLISH's first byte without its DUP and RETAIN bits
_PUBACK = struct.Struct("!BBH")  # paho's packing of a PUBACK: type, remaining length 2, id
_BLOCKED = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class BufferedSocket:
    """A connected (plain or TLS) socket with a read buffer and a corkable write buffer."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self._sock = sock
        self._data = b""
        self._at = 0
        self._out = bytearray()
        self._corked = False
        self._tls = isinstance(sock, ssl.SSLSocket)

    # --- what paho calls -----------------------------------------------------------------

    def next_publish(self) -> tuple[int, bytes, int, bytes] | None:
        """The next packet in the buffer when it is a whole MQTT 3.1.1 PUBLISH of QoS 0 or 1,
        taken out of the buffer: its first byte (flags), topic, packet id (0 at QoS 0) and
        payload. Else None: paho reads whatever comes next its own way (through ``recv``), and
        judges a malformed packet."""
        data, at = self._data, self._at
        if len(data) - at < 2 or data[at] & 0xF6 not in _PUBLISH_QOS_0_1:
            return None
        size, shift, end = 0, 0, at + 1
        while True:  # the remaining length: 7 bits a byte, at most 4 bytes
            if end >= len(data) or end - at > 4:
                return None
            byte = data[end]
            size |= (byte & 127) << shift
            shift += 7
            end += 1
            if not byte & 128:
                break
        stop = end + size
        if size < 2 or stop > len(data):
            return None
        first = data[at]
        topic_end = end + 2 + (data[end] << 8 | data[end + 1])
        payload_at = topic_end + 2 if first & 0x02 else topic_end  # QoS 1: a packet id
        if topic_end == end + 2 or payload_at > stop:
            return None
        mid = data[topic_end] << 8 | data[topic_end + 1] if first & 0x02 else 0
        self._at = stop
        return first, data[end + 2 : topic_end], mid, data[payload_at:stop]

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
        inside = self._sock.pending() if self._tls else 0  # type: ignore[union-attr]
        return len(self._data) - self._at + inside

    def __getattr__(self, name: str) -> Any:  # e.g. getpeercert
        return getattr(self._sock, name)

    # --- what the caller uses ------------------------------------------------------------

    def buffered(self) -> bool:
        """True while bytes wait that the selector will not report: read again."""
        return self._at < len(self._data) or (self._tls and self.pending() > 0)

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


class Received(paho.MQTTMessage):
    """A received PUBLISH as paho's ``MQTTMessage``, without what only a sent one needs (paho
    gives every message an ``MQTTMessageInfo``, whose condition variable is a lock)."""

    __slots__ = ()

    def __init__(self, first: int, topic: bytes, mid: int, payload: bytes) -> None:
        self.mid = mid
        self._topic = topic
        self.qos = (first >> 1) & 3
        self.payload = payload
        self.dup = bool(first & 0x08)
        self.retain = bool(first & 0x01)
        self.properties = None


class FastClient(paho.Client):
    """A paho client whose socket is a ``BufferedSocket``, and that takes each whole QoS 0 or 1
    PUBLISH of MQTT 3.1.1 out of the buffer in one step and hands it to ``on_message`` at once.
    paho reads a packet in three or more calls, updating a dict of its state for each, decodes
    it into a named tuple, builds an ``MQTTMessage`` with a lock in it, and first looks the
    topic up in its tree of per-topic callbacks (a closure and a generator a message, in a
    cycle only the cyclic garbage collector frees): most of the subscriber's time. Anything
    else (another packet, one not all here yet, MQTT 5, a per-topic callback registered) goes
    paho's way."""

    _filtered = False

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def read_buffered(self, limit: int) -> bool:
        """``loop_read`` for up to ``limit`` packets: True when more wait in the buffer (where
        the selector cannot see them: call again), False when it is empty or the connection
        was lost (paho then closes the socket)."""
        self._last_bytes_received = paho.time_func()  # what paho's keep-alive check reads
        on_message = self.on_message
        fast = on_message is not None and not self._filtered and self._protocol != paho.MQTTv5
        for _ in range(limit):
            sock = self._sock
            if not isinstance(sock, BufferedSocket):
                return False
            publish = sock.next_publish() if fast and not self._in_packet["command"] else None
            if publish is not None:
                message = Received(*publish)
                on_message(self, self._userdata, message)  # type: ignore[misc]
                if message.qos == 1 and not self._manual_ack:
                    self._send_puback(message.mid)
            else:
                rc = self._packet_read()
                if rc > 0:
                    self._loop_rc_handle(rc)
                    return False
                if rc == paho.MQTT_ERR_AGAIN:
                    return False
            if not sock.buffered():
                return False
        return True

    def ack_all(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages (``manual_ack``): their PUBACKs, packed as paho packs
        each, go to paho's queue as one piece to write."""
        if mids:
            pack = _PUBACK.pack
            self._packet_queue(paho.PUBACK, b"".join(pack(paho.PUBACK, 2, m) for m in mids), 0, 0)

    def _create_socket(self) -> Any:
        return BufferedSocket(cast(socket.socket, super()._create_socket()))

    @property
    def buffered_socket(self) -> BufferedSocket | None:
        sock = self.socket()
        return sock if isinstance(sock, BufferedSocket) else None
