"""Several ``ioc ingest mqtt`` processes on one MQTT shared subscription (IOC_MQTT_SHARE_GROUP).

Two subscriber processes, each with its own client id and persistent session, join the group
``ioc``; Mosquitto hands each message to one of them. One is killed with SIGKILL mid-stream and
started again: every reading is stored exactly once, none lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt_routes import load_routes
from ioc.bench.mosquitto import Broker, mosquitto
from ioc.settings import Settings
from tests.test_mqtt import REPO, ROUTES, SENSORS, Publisher, _prepare, rows, wait_for

GROUP = "ioc"
MEMBERS = ("ioc-a", "ioc-b")


@pytest.fixture
def shared() -> Iterator[tuple[Broker, Publisher]]:
    """A broker of the test's own, and a device publishing to it."""
    with mosquitto() as broker:
        device = Publisher(broker)
        yield broker, device
        device.close()


def _join(broker: Broker, client_id: str, routes: Path) -> None:
    """The member's session and its shared subscriptions, as its first start leaves them."""
    topics = [(f"$share/{GROUP}/{r.subscription()}", 1) for r in load_routes(routes)]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    acknowledged = threading.Event()
    client.on_subscribe = lambda *_: acknowledged.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(topics)
    assert acknowledged.wait(10), "the broker did not acknowledge the shared subscriptions"
    client.disconnect()
    client.loop_stop()


def _member(settings: Settings, client_id: str, key: str, routes: Path) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "IOC_DATABASE_URL": settings.database_url or "",
        "IOC_MQTT_URL": settings.mqtt_url or "",
        "IOC_MQTT_API_KEY": key,
        "IOC_MQTT_ROUTES_FILE": str(routes),
        "IOC_MQTT_CLIENT_ID": client_id,
        "IOC_MQTT_SHARE_GROUP": GROUP,
        "IOC_MQTT_BATCH_SIZE": "100",
        "IOC_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", "ingest", "mqtt"], env=environment, cwd=REPO
    )


def test_a_share_group_stores_each_reading_once_through_a_kill(
    settings: Settings, shared: tuple[Broker, Publisher], tmp_path: Path
) -> None:
    broker, device = shared
    db = settings.database_url or ""
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES, encoding="utf-8")
    key = _prepare(db)
    for member in MEMBERS:
        _join(broker, member, routes)
    chosen = settings.model_copy(update={"mqtt_url": broker.url})
    members = {m: _member(chosen, m, key, routes) for m in MEMBERS}
    total = 3000
    try:

        def publish_all() -> None:
            for n in range(total):
                device.publish(
                    f"city/counters/{SENSORS[n % 2]}/state",
                    {"ts": 1754010000 + n, "data": {"count": n % 97, "speed": 30.0}},
                )
                if n % 200 == 0:
                    time.sleep(0.01)  # a steady stream, not one burst

        stream = threading.Thread(target=publish_all)
        stream.start()
        wait_for(lambda: len(rows(db, "SELECT 1 FROM traffic_readings")) > 300, "part of it")
        members["ioc-a"].send_signal(signal.SIGKILL)
        members["ioc-a"].wait(10)
        stored_at_kill = len(rows(db, "SELECT 1 FROM traffic_readings"))
        stream.join(120)
        assert stored_at_kill < total, "the stream ended before the kill; nothing was tested"
        members["ioc-a"] = _member(chosen, "ioc-a", key, routes)
        wait_for(
            lambda: len(rows(db, "SELECT 1 FROM traffic_readings")) >= total,
            f"all {total} readings",
            seconds=120,
        )
    finally:
        for process in members.values():
            process.terminate()
            process.wait(20)
    stored = rows(
        db,
        "SELECT sensor_id, extract(epoch FROM observed_at)::bigint, vehicle_count"
        " FROM traffic_readings",
    )
    assert len(stored) == total
    assert set(stored) == {(SENSORS[n % 2], 1754010000 + n, n % 97) for n in range(total)}
    assert device.letters == []
