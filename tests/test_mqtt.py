"""MQTT ingest against a real Mosquitto broker and a real database.

Each test starts its own broker (Debian's mosquitto, persistence on) on a free port. Events are
published by a real MQTT client; the subscriber runs inside the test server (IOC_MQTT_URL) or as
its own process (``ioc ingest mqtt``), which one test kills with SIGKILL mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt_routes import load_routes
from ioc.bench.mosquitto import Broker, mosquitto
from ioc.settings import Settings
from ioc.store.keys import create_key
from ioc.store.reference import Sensor, upsert_sensors
from tests.conftest import RunningServer, start_server, stop_server

REPO = Path(__file__).resolve().parent.parent
SENSORS = ("HUE-TS-001", "HUE-TS-002")
ROUTES = """
[[route]]
topic = "ioc/events/#"

[[route]]
topic = "ioc/traffic/{sensor_id}"
kind = "traffic_count"

[[route]]
topic = "ioc/reports/#"
kind = "field_report"

[[route]]
topic = "ioc/dossiers/#"
kind = "dossier_event"

# A counter's own JSON: {"ts": 1754010000, "data": {"count": 12, "speed": 41.5}}
[[route]]
topic = "city/counters/{sensor_id}/state"
kind = "traffic_count"
fields = { observed_at = "ts", vehicle_count = "data.count", avg_speed_kmh = "data.speed" }
set = { interval_s = 60 }
"""


@pytest.fixture
def broker() -> Iterator[Broker]:
    with mosquitto() as running:
        yield running


def _prepare(db_url: str) -> str:
    """Register the sensors and make the subscriber's source key (before the server starts)."""

    async def work() -> str:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            sensors = [Sensor(sensor_id=s, lon=107.58, lat=16.46) for s in SENSORS]
            await upsert_sensors(conn, sensors)
            key, _ = await create_key(conn, "source", "hue-s", None, "mqtt subscriber")
            return key.token

    return asyncio.run(work())


def open_session(
    broker: Broker, client_id: str, routes: Path, login: tuple[str, str] | None = None
) -> None:
    """Have the broker keep the subscriber's session (and queue its messages) from now on,
    as it does once the subscriber has connected the first time."""
    subscriptions = [(route.subscription(), 1) for route in load_routes(routes)]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    if login:
        client.username_pw_set(*login)
    client.connect(broker.host, broker.port)
    client.loop_start()
    acknowledged = threading.Event()
    client.on_subscribe = lambda *_: acknowledged.set()
    client.subscribe(subscriptions)
    assert acknowledged.wait(10), "the broker did not acknowledge the subscriptions"
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def mqtt_settings(settings: Settings, broker: Broker, tmp_path: Path) -> Settings:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES, encoding="utf-8")
    open_session(broker, "ioc-test", routes)
    return settings.model_copy(
        update={
            "mqtt_url": broker.url,
            "mqtt_api_key": _prepare(settings.database_url or ""),
            "mqtt_routes_file": routes,
            "mqtt_client_id": "ioc-test",
            "public_status": True,
        }
    )


@pytest.fixture
def mqtt_server(mqtt_settings: Settings) -> Iterator[RunningServer]:
    thread, running = start_server(mqtt_settings)
    yield running
    stop_server(thread)


class Publisher:
    """A device or gateway: publishes at QoS 1, and hears the dead-letter topic."""

    def __init__(
        self, broker: Broker, client_id: str = "test-device", login: tuple[str, str] | None = None
    ) -> None:
        self.letters: list[dict[str, Any]] = []
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if login:
            self._client.username_pw_set(*login)
        self._client.max_inflight_messages_set(1000)
        self._client.on_message = lambda _c, _u, m: self.letters.append(json.loads(m.payload))
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._client.subscribe("ioc/dead-letter", qos=1)

    def publish(self, topic: str, payload: dict[str, Any] | bytes) -> paho.MQTTMessageInfo:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self._client.publish(topic, body, qos=1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def device(broker: Broker) -> Iterator[Publisher]:
    publisher = Publisher(broker)
    yield publisher
    publisher.close()


def rows(db_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query).fetchall()  # queries are the tests' own


def wait_for(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {seconds} s")
        time.sleep(0.05)


def counted(server: RunningServer, *samples: str) -> None:
    """Wait for these samples in the server's metrics: a batch is counted once the broker has
    taken its dead letters, which a subscriber may receive first, and after its commit."""
    wait_for(
        lambda: all(s in httpx.get(f"{server.url}/metrics").text for s in samples),
        f"metrics {', '.join(samples)}",
        seconds=10,
    )


def reading(minute: int, **extra: Any) -> dict[str, Any]:
    return {
        "observed_at": f"2025-08-01T08:{minute:02d}:00+07:00",
        "interval_s": 60,
        "vehicle_count": 10 + minute,
        **extra,
    }


REPORT = {
    "external_id": "MQ-1",
    "category": "moi_truong",
    "description": "Rác thải tồn đọng trên đường Lê Lợi",
    "lon": 107.59,
    "lat": 16.46,
    "occurred_at": "2025-08-01T07:45:00+07:00",
}
DOSSIER = {
    "dossier_id": "H46.22-250801-0009",
    "procedure_code": "1.001612",
    "agency": "SO-XD",
    "event": "accepted",
    "at": "2025-08-01T08:10:00+07:00",
    "channel": "counter",
}


def test_events_on_topics_are_stored(mqtt_server: RunningServer, device: Publisher) -> None:
    db = mqtt_server.db_url
    device.publish("ioc/traffic/HUE-TS-001", reading(1))
    device.publish("ioc/traffic/HUE-TS-002", reading(1, avg_speed_kmh=38.5))
    device.publish("ioc/reports/hue-s", REPORT)
    device.publish("ioc/dossiers/one-stop-shop", DOSSIER)
    device.publish(
        "ioc/events/gateway-7",
        {"kind": "traffic_count", **reading(2)} | {"sensor_id": "HUE-TS-001"},
    )
    device.publish(
        "city/counters/HUE-TS-002/state",
        {"ts": 1754010000, "data": {"count": 12, "speed": 41.5}, "battery": 88},
    )
    wait_for(lambda: len(rows(db, "SELECT 1 FROM traffic_readings")) == 4, "4 readings")
    wait_for(lambda: len(rows(db, "SELECT 1 FROM dossier_events")) == 1, "the dossier event")
    wait_for(lambda: len(rows(db, "SELECT 1 FROM field_reports")) == 1, "the field report")
    readings = rows(
        db,
        "SELECT sensor_id, observed_at, vehicle_count, avg_speed_kmh FROM traffic_readings"
        " ORDER BY sensor_id, observed_at",
    )
    assert [(r[0], r[2], r[3]) for r in readings] == [
        ("HUE-TS-001", 11, None),
        ("HUE-TS-001", 12, None),
        ("HUE-TS-002", 12, 41.5),  # the counter's own JSON, mapped (08:00 in Huế)
        ("HUE-TS-002", 11, 38.5),
    ]
    assert readings[2][1].timestamp() == 1754010000
    # The subscriber's key is the source key of hue-s: the report is that source's, and routed.
    assert rows(db, "SELECT source, external_id FROM field_reports") == [("hue-s", "MQ-1")]
    assert rows(db, "SELECT count(*) FROM tickets") == [(1,)]
    assert rows(db, "SELECT source, dossier_id FROM dossier_events") == [
        ("hue-s", "H46.22-250801-0009")
    ]
    assert device.letters == []


def test_a_repeated_message_is_stored_once(mqtt_server: RunningServer, device: Publisher) -> None:
    for _ in range(3):
        device.publish("ioc/reports/hue-s", REPORT)
    device.publish("ioc/traffic/HUE-TS-001", reading(9))
    wait_for(
        lambda: len(rows(mqtt_server.db_url, "SELECT 1 FROM traffic_readings")) == 1,
        "the reading after the repeats",
    )
    assert rows(mqtt_server.db_url, "SELECT count(*) FROM field_reports") == [(1,)]
    counted(mqtt_server, 'ioc_mqtt_events_total{outcome="duplicate"} 2.0')


def test_bad_payloads_go_to_the_dead_letter_topic(
    mqtt_server: RunningServer, device: Publisher
) -> None:
    bad: list[tuple[str, dict[str, Any] | bytes, str | None, str]] = [
        ("ioc/traffic/HUE-TS-001", b'{"observed_at": "2025-08-01T08:01', None, "malformed JSON"),
        ("ioc/traffic/HUE-TS-404", reading(3), "sensor_id", "'HUE-TS-404' is not registered"),
        ("ioc/reports/x", REPORT | {"source": "ihanoi"}, "source", "does not match"),
        ("ioc/reports/x", REPORT | {"lat": 123.4}, "lat", "<= 90"),
        ("ioc/traffic/HUE-TS-001", reading(4, sensor_id="HUE-TS-002"), "sensor_id", "topic"),
        ("city/counters/HUE-TS-001/state", {"data": {"count": 3}}, "observed_at", "'ts'"),
        ("ioc/traffic/HUE-TS-001", b"", None, "empty"),
    ]
    for topic, payload, _, _ in bad:
        device.publish(topic, payload)
    device.publish("ioc/traffic/HUE-TS-001", reading(5))  # after them: the stream goes on
    wait_for(lambda: len(device.letters) == len(bad), f"{len(bad)} dead letters")
    wait_for(
        lambda: len(rows(mqtt_server.db_url, "SELECT 1 FROM traffic_readings")) == 1,
        "the good reading",
    )
    by_reason = sorted(device.letters, key=lambda letter: letter["reason"])
    for topic, _, field, words in bad:
        letter = next(x for x in by_reason if x["topic"] == topic and words in x["reason"])
        assert letter["field"] == field, letter
    malformed = next(x for x in device.letters if "malformed" in x["reason"])
    assert malformed["payload"] == '{"observed_at": "2025-08-01T08:01'
    counted(
        mqtt_server,
        f'ioc_mqtt_events_total{{outcome="refused"}} {float(len(bad))}',
        'ioc_mqtt_events_total{outcome="stored"} 1.0',
    )


def test_a_gateway_array_stores_each_valid_event(
    mqtt_server: RunningServer, device: Publisher
) -> None:
    readings = [
        {"kind": "traffic_count", "sensor_id": "HUE-TS-001", **reading(1)},
        {"kind": "traffic_count", "sensor_id": "HUE-TS-404", **reading(1)},
        {"kind": "traffic_count", "sensor_id": "HUE-TS-002", **reading(1)},
        {"kind": "traffic_count", "sensor_id": "HUE-TS-002", **reading(2, vehicle_count=-1)},
    ]
    device.publish("ioc/events/gateway-7", json.dumps(readings).encode())
    wait_for(lambda: len(device.letters) == 2, "2 dead letters")
    assert rows(mqtt_server.db_url, "SELECT sensor_id FROM traffic_readings ORDER BY 1") == [
        ("HUE-TS-001",),
        ("HUE-TS-002",),
    ]
    unknown, negative = sorted(device.letters, key=lambda letter: letter["index"])
    assert (unknown["index"], unknown["field"]) == (1, "sensor_id")
    assert json.loads(unknown["payload"]) == readings[1]
    assert (negative["index"], negative["field"]) == (3, "vehicle_count")
    counted(
        mqtt_server,
        'ioc_mqtt_events_total{outcome="stored"} 2.0',
        'ioc_mqtt_events_total{outcome="refused"} 2.0',
    )


def test_the_broker_login_is_the_one_in_the_url(settings: Settings, tmp_path: Path) -> None:
    users = {"ioc-ingest": "s3cret/+@", "counter-17": "another"}
    with mosquitto(users) as broker:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES, encoding="utf-8")
        open_session(broker, "ioc-login", routes, ("ioc-ingest", users["ioc-ingest"]))
        chosen = settings.model_copy(
            update={
                "mqtt_url": f"mqtt://ioc-ingest:s3cret%2F%2B%40@{broker.host}:{broker.port}",
                "mqtt_api_key": _prepare(settings.database_url or ""),
                "mqtt_routes_file": routes,
                "mqtt_client_id": "ioc-login",
            }
        )
        thread, server = start_server(chosen)
        device = Publisher(broker, "counter-17", ("counter-17", users["counter-17"]))
        try:
            device.publish("ioc/traffic/HUE-TS-001", reading(7))
            wait_for(
                lambda: len(rows(server.db_url, "SELECT 1 FROM traffic_readings")) == 1,
                "the reading published with a login",
            )
        finally:
            device.close()
            stop_server(thread)


# --- kill -9 of the subscriber process mid-stream -----------------------------------------


def _subscriber(settings: Settings) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "IOC_DATABASE_URL": settings.database_url or "",
        "IOC_MQTT_URL": settings.mqtt_url or "",
        "IOC_MQTT_API_KEY": settings.mqtt_api_key or "",
        "IOC_MQTT_ROUTES_FILE": str(settings.mqtt_routes_file),
        "IOC_MQTT_CLIENT_ID": settings.mqtt_client_id,
        "IOC_MQTT_BATCH_SIZE": "200",
        "IOC_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", "ingest", "mqtt"], env=environment, cwd=REPO
    )


def test_kill_9_mid_stream_loses_nothing_and_stores_each_once(
    mqtt_settings: Settings, broker: Broker, device: Publisher
) -> None:
    db = mqtt_settings.database_url or ""
    total = 4000
    process = _subscriber(mqtt_settings)
    try:
        # The first reading is stored once the subscriber's session and subscriptions exist.
        device.publish("ioc/traffic/HUE-TS-001", reading(0))
        wait_for(lambda: len(rows(db, "SELECT 1 FROM traffic_readings")) == 1, "the first one")

        def publish_all() -> None:
            for n in range(1, total):
                seconds = 1754010000 + n
                device.publish(
                    f"city/counters/{SENSORS[n % 2]}/state",
                    {"ts": seconds, "data": {"count": n % 97, "speed": 30.0}},
                )
                if n % 200 == 0:
                    time.sleep(0.01)  # a steady stream, not one burst

        stream = threading.Thread(target=publish_all)
        stream.start()
        wait_for(lambda: len(rows(db, "SELECT 1 FROM traffic_readings")) > 300, "part of it")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        stored_at_kill = len(rows(db, "SELECT 1 FROM traffic_readings"))
        stream.join(120)
        assert stored_at_kill < total, "the stream ended before the kill; nothing was tested"
        process = _subscriber(mqtt_settings)
        wait_for(
            lambda: len(rows(db, "SELECT 1 FROM traffic_readings")) >= total,
            f"all {total} readings",
            seconds=120,
        )
    finally:
        process.terminate()
        process.wait(20)
    stored = rows(
        db,
        "SELECT sensor_id, extract(epoch FROM observed_at)::bigint, vehicle_count"
        " FROM traffic_readings WHERE observed_at <> '2025-08-01T08:00:00+07:00'",
    )
    expected = {(SENSORS[n % 2], 1754010000 + n, n % 97) for n in range(1, total)}
    assert len(stored) == total - 1
    assert set(stored) == expected
    assert device.letters == []
