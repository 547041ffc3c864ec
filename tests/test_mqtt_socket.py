"""The subscriber's paho client on its buffered socket: PUBLISH packets taken whole out of the
buffer come out as paho would give them, however the bytes arrive, and a batch's PUBACKs
leave as the packets paho would write.

One test feeds a real socket pair in pieces of several sizes (from a byte at a time, which paho
reads its own way, to all at once, which is taken whole); another goes through a real
Mosquitto. A payload is larger than the read buffer.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt_socket import BufferedSocket, FastClient
from ioc.bench.mosquitto import Broker, mosquitto
from ioc.bench.mqtt_publisher import remaining_length

Seen = tuple[str, bytes, int, int, bool]  # topic, payload, packet id, QoS, retain


def _client(seen: list[Seen]) -> FastClient:
    client = FastClient(
        CallbackAPIVersion.VERSION2, client_id="ioc-test-socket", protocol=paho.MQTTv311
    )
    client.manual_ack_set(True)

    def on_message(_: paho.Client, __: object, message: paho.MQTTMessage) -> None:
        seen.append(
            (message.topic, bytes(message.payload), message.mid, message.qos, message.retain)
        )

    client.on_message = on_message
    return client


def _publish(topic: str, payload: bytes, mid: int, qos: int, retain: bool = False) -> bytes:
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + (struct.pack("!H", mid) if qos else b"")
    return (
        bytes([0x30 | qos << 1 | retain])
        + remaining_length(len(body) + len(payload))
        + body
        + payload
    )


SENT: list[Seen] = [
    ("ioc/traffic/HUE-TS-001", b'{"vehicle_count": 12}', 1, 1, False),
    ("ioc/traffic/Huế-02", b"", 2, 1, False),  # a topic in UTF-8, an empty payload
    ("ioc/events/x", b"q" * 300, 0, 0, True),  # QoS 0 (no packet id), two length bytes, retained
    ("ioc/traffic/HUE-TS-003", b"[1, 2]" * 12_000, 65_535, 1, False),  # more than a read
]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1_000_000])
def test_packets_however_split_come_out_whole_and_in_order(
    pair: tuple[socket.socket, socket.socket], chunk: int
) -> None:
    ours, theirs = pair
    seen: list[Seen] = []
    client = _client(seen)
    client._sock = BufferedSocket(ours)
    puback = b"\x40\x02\x00\x07"  # a PUBACK between them goes paho's own way
    stream = b"".join(_publish(*m) for m in SENT[:2]) + puback + _publish(*SENT[2])
    stream += _publish(*SENT[3])
    for at in range(0, len(stream), chunk):
        theirs.sendall(stream[at : at + chunk])
        while client.read_buffered(10):
            pass
    assert seen == SENT
    client.ack_all([mid for _, _, mid, qos, _ in seen if qos == 1])
    assert client.loop_write() == paho.MQTT_ERR_SUCCESS
    assert theirs.recv(100) == b"".join(struct.pack("!BBH", 0x40, 2, m) for m in (1, 2, 65_535))


def test_a_malformed_publish_is_paho_s_protocol_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    client = _client([])
    client._sock = BufferedSocket(ours)
    theirs.sendall(b"\x32\x04\x00\x00\x00\x01")  # an empty topic: not allowed in MQTT 3.1.1
    assert not client.read_buffered(10)
    assert client._sock is None  # paho judged it and closed the connection


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with mosquitto() as running:
        yield running


def test_messages_through_mosquitto_arrive_as_published(broker: Broker) -> None:
    seen: list[Seen] = []
    client = _client(seen)
    subscribed: list[bool] = []
    client.on_connect = lambda c, *_: c.subscribe([("ioc/#", 1)])
    client.on_subscribe = lambda *_: subscribed.append(True)
    client.connect(broker.host, broker.port)
    sender = paho.Client(CallbackAPIVersion.VERSION2, client_id="ioc-test-sender")
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    published = False
    try:
        while len(seen) < 3 * len(SENT):
            readable, _, _ = select.select([client.socket()], [], [], 10)
            assert readable, f"only {len(seen)} messages arrived"
            while client.read_buffered(100):
                pass
            client.loop_write()
            if subscribed and not published:
                published = True
                for _ in range(3):
                    for topic, payload, _, qos, _ in SENT:
                        sender.publish(topic, payload, qos=qos).wait_for_publish(10)
    finally:
        sender.disconnect()
        sender.loop_stop()
        client.disconnect()
    assert [(t, p, q) for t, p, _, q, _ in seen] == [(t, p, q) for t, p, _, q, _ in SENT] * 3
    ids = [mid for _, _, mid, qos, _ in seen if qos == 1]
    assert 0 not in ids and len(set(ids)) == len(ids)  # the broker's own packet ids
