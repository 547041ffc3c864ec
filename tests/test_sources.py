"""Source adapters against a running server: the demo simulator and file replay."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

from ingest.replay import Pacer, replay_file
from ingest.replay_files import ReplayOptions
from ingest.simulator import ProvinceSimulator
from ioc.clock import ManualClock
from tests.conftest import RunningServer, auth, make_key
from tests.test_ingest_api import count, reading, report

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def test_simulated_province_is_accepted_whole(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    """Everything the demo simulator produces passes the platform's own validation."""
    clock = ManualClock(datetime.now(HCM) - timedelta(hours=2))
    simulator = ProvinceSimulator(
        clock, seed=3, n_sensors=10, report_rate_per_s=0.2, dossier_rate_per_s=0.05
    )
    assert (
        client.post("/v1/sensors", json=simulator.sensors(), headers=auth(admin_key)).status_code
        == 200
    )
    key = make_key(server, "source", source="simulator")
    events = simulator.events_until(clock.now() + timedelta(minutes=90))
    kinds = {e["kind"] for e in events}
    assert kinds == {"field_report", "traffic_count", "dossier_event"}
    accepted = 0
    for first in range(0, len(events), 1000):
        chunk = events[first : first + 1000]
        body = "\n".join(json.dumps(e, ensure_ascii=False) for e in chunk).encode()
        answer = client.post(
            "/v1/events/batch",
            content=body,
            headers=auth(key) | {"Content-Type": "application/x-ndjson"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["errors"] == []
        accepted += answer.json()["accepted"]
    assert accepted == len(events)


def test_replay_ndjson_reports_file_lines(
    server: RunningServer, source_key: str, sensors: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "events.ndjson"
    lines = [reading(sensors[0], m) for m in range(7)]
    lines.insert(3, reading(sensors[0], 8) | {"vehicle_count": -1})
    path.write_text("\n".join(json.dumps(e) for e in lines) + "\n", encoding="utf-8")
    options = ReplayOptions(url=server.url, key=source_key, batch_size=3)
    first = replay_file(path, options)
    assert (first.sent, first.accepted, first.duplicates) == (8, 7, 0)
    assert len(first.rejected) == 1
    assert first.rejected[0].startswith(f"{path}:4: vehicle_count:")
    again = replay_file(path, options)
    assert (again.accepted, again.duplicates) == (0, 7)
    assert count(server, "traffic_readings") == 7


def test_replay_csv_with_column_mapping(
    server: RunningServer, source_key: str, sensors: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "aarhus.csv"
    path.write_text(
        "REPORT_ID,TIMESTAMP,vehicleCount,avgSpeed\n"
        f"{sensors[1]},2014-08-04T00:00:00,3,65\n"
        f"{sensors[1]},2014-08-04T00:05:00,,61\n"
        f"{sensors[1]},2014-08-04T00:10:00,5,58\n",
        encoding="utf-8",
    )
    options = ReplayOptions(
        url=server.url,
        key=source_key,
        kind="traffic_count",
        columns={
            "sensor_id": "REPORT_ID",
            "observed_at": "TIMESTAMP",
            "vehicle_count": "vehicleCount",
            "avg_speed_kmh": "avgSpeed",
        },
        constants={"interval_s": "300"},
    )
    summary = replay_file(path, options)
    assert summary.accepted == 2
    assert summary.rejected == [
        f"{path}:3: vehicle_count: Object missing required field `vehicle_count`"
    ]
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT min(observed_at) FROM traffic_readings").fetchone()
    assert row is not None and row[0] == datetime(2014, 8, 4, tzinfo=HCM)


def test_replay_follows_event_time_at_chosen_speed() -> None:
    """With --speed 60, events an hour apart are sent a minute apart (time is injected)."""
    now = [0.0]
    pacer = Pacer(ReplayOptions(url="", key="", speed=60), lambda: now[0])
    base = datetime(2025, 8, 1, 8, 0, tzinfo=HCM)
    waits = []
    for hour in range(3):
        wait = pacer.wait_for(
            report(f"P{hour}") | {"occurred_at": (base + timedelta(hours=hour)).isoformat()}
        )
        waits.append(wait)
        now[0] += wait
    assert waits == [0.0, 60.0, 60.0]


def test_replay_at_a_fixed_rate() -> None:
    now = [0.0]
    pacer = Pacer(ReplayOptions(url="", key="", rate=4), lambda: now[0])
    waits = [pacer.wait_for({}) for _ in range(5)]
    assert waits == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_simulator_run_posts_through_sink_without_sleeping() -> None:
    clock = ManualClock(datetime(2025, 8, 1, 7, 0, tzinfo=HCM))
    simulator = ProvinceSimulator(clock, seed=1, n_sensors=5)
    batches: list[list[dict[str, Any]]] = []

    async def sink(batch: list[dict[str, Any]]) -> None:
        batches.append(batch)

    delivered = asyncio.run(simulator.run(sink, max_events=200))
    assert delivered == 200
    assert sum(len(b) for b in batches) == 200
