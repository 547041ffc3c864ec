"""The MQTT benchmark's load: QoS 1 PUBLISH packets written straight to the broker's socket.

A load generator must cost far less than what it measures. paho-mqtt spends about as much CPU
per message publishing as the subscriber does taking it (an object, a lock and a callback a
message), so on a small machine the publishers, not the subscriber, would set the pace. This
publisher speaks only the part of MQTT 3.1.1 it needs: CONNECT, QoS 1 PUBLISH in chunks of
``CHUNK`` with one ``sendall`` each, at most ``WINDOW`` unacknowledged, counting the broker's
PUBACKs, and DISCONNECT. The product's subscriber uses paho (``ingest/mqtt.py``).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from array import array
from collections.abc import Sequence

WINDOW = 2_000  # messages in flight (not yet acknowledged by the broker)
CHUNK = 50  # messages written at once


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length 'remaining length'."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (128 if n else 0))
        if not n:
            return bytes(out)


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _publish_packet(topic: bytes, payload: bytes, mid: int) -> bytes:
    body = _string(topic) + struct.pack("!H", mid) + payload
    return b"\x32" + remaining_length(len(body)) + body


class _Acks:
    """Counts the PUBACKs in what the broker sends (a packet may span two reads)."""

    def __init__(self) -> None:
        self.count = 0
        self._rest = b""

    def feed(self, data: bytes) -> None:
        buffer, at = self._rest + data, 0
        while at + 2 <= len(buffer):
            size, shift, end = 0, 0, at + 1
            while end < len(buffer):
                byte = buffer[end]
                size |= (byte & 127) << shift
                shift += 7
                end += 1
                if not byte & 128:
                    break
            else:
                break  # the length is not all here yet
            if end + size > len(buffer):
                break
            if buffer[at] >> 4 == 4:
                self.count += 1
            at = end + size
        self._rest = buffer[at:]


def publish_paced(
    host: str, port: int, client_id: str, messages: Sequence[tuple[str, bytes]], rate: float
) -> array[float]:
    """Publish ``messages`` at QoS 1 paced at ``rate`` a second; the publish time of each (Unix
    seconds), then the time the last PUBACK came and the CPU seconds it all took."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _string(client_id.encode())
    sock.sendall(b"\x10" + remaining_length(len(body)) + body)
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"the broker refused the publisher: {connack!r}")
    acks = _Acks()

    def read(timeout: float) -> None:
        while select.select([sock], [], [], timeout)[0]:
            data = sock.recv(65_536)
            if not data:
                raise RuntimeError("the broker closed the publisher's connection")
            acks.feed(data)
            timeout = 0

    times = array("d")
    started, cpu = time.perf_counter(), time.process_time()
    for at in range(0, len(messages), CHUNK):
        ahead = started + at / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        while at - acks.count > WINDOW:
            read(0.01)
        chunk = messages[at : at + CHUNK]
        packets = b"".join(
            _publish_packet(topic.encode(), payload, (at + n) % 65_535 + 1)
            for n, (topic, payload) in enumerate(chunk)
        )
        times.extend([time.time()] * len(chunk))
        sock.sendall(packets)
        read(0)
    deadline = time.monotonic() + 300
    while acks.count < len(messages) and time.monotonic() < deadline:
        read(0.05)
    times.append(time.time())
    times.append(time.process_time() - cpu)
    sock.sendall(b"\xe0\x00")
    sock.close()
    return times
