"""``ioc alerts tick`` and ``ioc alerts run``: every rule set from the command line.

The commands run as a user runs them (a subprocess) against the test database; webhooks go to
a real receiving server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import RunningServer, auth, make_key
from tests.test_sla import CONFIG, HCM, post_reports, report
from tests.test_webhooks import Receiver
from tests.test_webhooks import receiver as receiver

SENSOR = {"sensor_id": "HUE-TS-001", "lon": 107.52, "lat": 16.42, "name": "Nút giao 1"}


def ioc(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc.cli", "alerts", *args],
        env={**os.environ, "IOC_DATABASE_URL": server.db_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def keys(client: httpx.Client, server: RunningServer, receiver: Receiver) -> dict[str, str]:
    """The SLA test agencies, with the sensor's traffic routed to so-tnmt and its hook live."""
    config: dict[str, Any] = json.loads(json.dumps(CONFIG))
    config["agencies"][1]["webhook_url"] = f"{receiver.url}/tnmt"
    config["rules"].append({"category": "giao_thong", "agency": "so-tnmt"})
    admin = make_key(server, "admin")
    answer = client.put("/v1/admin/config", json=config, headers=auth(admin))
    assert answer.status_code == 200, answer.text
    answer = client.post("/v1/sensors", json=[SENSOR], headers=auth(admin))
    assert answer.status_code == 200, answer.text
    return {"admin": admin, "source": make_key(server, "source", source="hue-s")}


def reading(client: httpx.Client, key: str, at: datetime) -> None:
    event = {
        "kind": "traffic_count",
        "sensor_id": SENSOR["sensor_id"],
        "observed_at": at.isoformat(),
        "interval_s": 300,
        "vehicle_count": 20,
        "avg_speed_kmh": 40.0,
    }
    answer = client.post("/v1/events", json=event, headers=auth(key))
    assert answer.status_code in (200, 201, 202), answer.text


def alerts(server: RunningServer) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.db_url) as conn:
        return conn.execute(
            "SELECT subject_kind, rule, level, agency, raised_at FROM alerts ORDER BY id"
        ).fetchall()


def test_a_tick_at_an_instant_runs_every_rule_set_as_of_then(
    client: httpx.Client, server: RunningServer, keys: dict[str, str], receiver: Receiver
) -> None:
    opened = datetime.now(HCM).replace(second=0, microsecond=0) - timedelta(hours=1)
    post_reports(client, keys["source"], [report(1, opened)])  # due ten hours after opening
    reading(client, keys["source"], opened)
    early = ioc(server, "tick", "--at", (opened + timedelta(minutes=10)).isoformat())
    assert early.returncode == 0, early.stderr
    assert "traffic: checked 1 sensors: 0 silent" in early.stdout
    assert alerts(server) == []

    late = opened + timedelta(hours=10, minutes=1)
    result = ioc(server, "tick", "--at", late.isoformat())
    assert result.returncode == 0, result.stderr
    assert "1 alerts raised" in result.stdout
    assert "traffic: checked 1 sensors: 1 silent, 0 congested; 1 alerts raised" in result.stdout
    assert "webhooks: 1 deliveries attempted" in result.stdout
    assert alerts(server) == [
        ("sensor", "silent", "warning", "so-tnmt", late),
        ("ticket", "deadline", "overdue", "so-tnmt", late),
    ]
    # The overdue alert went out at once, signed, as of the chosen instant.
    sent = receiver.wait_for("/tnmt")
    assert json.loads(sent.body)["alert"]["level"] == "overdue"
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT state, delivered_at FROM outbox").fetchone()
    assert row == ("delivered", late)


def test_the_worker_runs_the_traffic_watch_and_delivers(
    client: httpx.Client, server: RunningServer, keys: dict[str, str], receiver: Receiver
) -> None:
    reading(client, keys["source"], datetime.now(HCM) - timedelta(hours=1))
    env = {
        **os.environ,
        "IOC_DATABASE_URL": server.db_url,
        "IOC_SLA_TICK_S": "0.2",
        "IOC_TRAFFIC_CHECK_S": "0.2",
        "IOC_ALERT_DIGEST_S": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", "alerts", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The silent sensor's alert is raised and goes out in so-tnmt's next digest.
        sent = receiver.wait_for("/tnmt", timeout=60)
    finally:
        # SIGTERM, as a service manager stops it (a shell's background job ignores SIGINT,
        # and so would the worker started from it).
        worker.send_signal(signal.SIGTERM)
        try:
            _, errors = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()  # and read its pipe to the end, so nothing is left open
            _, errors = worker.communicate()
            raise AssertionError(
                f"the worker did not stop within 60 s of SIGTERM:\n{errors}"
            ) from None
    assert worker.returncode == 0, errors  # stopped cleanly, not killed by the signal
    message = json.loads(sent.body)
    assert message["type"] == "digest", errors
    assert [(a["rule"], a["subject_id"]) for a in message["alerts"]] == [("silent", "HUE-TS-001")]
