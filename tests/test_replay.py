"""``ioc replay`` with real files: column renames, constant fields, local times, server errors.

A small generated file in the layout of the Aarhus traffic data (../shared/data/traffic) runs
everywhere, through the commands the README documents; the real file is replayed too (its
first rows, with every real sensor registered) where it exists beside the checkout.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ingest.replay import replay_file
from ingest.replay_files import ReplayOptions, read_events
from ioc.errors import InvalidInput
from tests.conftest import RunningServer
from tests.test_ingest_api import reading

REPO = Path(__file__).resolve().parent.parent


def shared_data(folder: str) -> Path | None:
    """../shared/data/<folder> beside the checkout (or beside the tree holding it), if any."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "data" / folder
        if candidate.is_dir():
            return candidate
    return None


REAL_TRAFFIC = shared_data("traffic")
REAL_READINGS = "aarhus_traffic_5min_2014-08-04_2014-08-10.csv"
REAL_SENSORS = "aarhus_traffic_sensors_metadata.csv"

# The commands of the README, without the files and the key.
SENSORS_IMPORT = [
    "--id-column", "REPORT_ID", "--lon-column", "POINT_1_LNG", "--lat-column", "POINT_1_LAT",
    "--name-column", "REPORT_NAME",
]  # fmt: skip
REPLAY = [
    "--kind", "traffic_count",
    "--column", "REPORT_ID=sensor_id", "--column", "TIMESTAMP=observed_at",
    "--column", "vehicleCount=vehicle_count", "--column", "avgSpeed=avg_speed_kmh",
    "--set", "interval_s=300", "--timezone", "Europe/Copenhagen",
]  # fmt: skip
SENSOR_COLUMNS = [
    "POINT_1_STREET", "DURATION_IN_SEC", "POINT_1_NAME", "POINT_1_CITY", "POINT_2_NAME",
    "POINT_2_LNG", "POINT_2_STREET", "NDT_IN_KMH", "POINT_2_POSTAL_CODE", "POINT_2_COUNTRY",
    "POINT_1_STREET_NUMBER", "ORGANISATION", "POINT_1_LAT", "POINT_2_LAT", "POINT_1_POSTAL_CODE",
    "POINT_2_STREET_NUMBER", "POINT_2_CITY", "extID", "ROAD_TYPE", "POINT_1_LNG", "REPORT_ID",
    "POINT_1_COUNTRY", "DISTANCE_IN_METERS", "REPORT_NAME", "RBA_ID", "_id",
]  # fmt: skip
READING_COLUMNS = ["REPORT_ID", "TIMESTAMP", "vehicleCount", "avgSpeed", "avgMeasuredTime"]
SENSOR_IDS = ["158324", "158355", "158386"]
SLOTS = 12  # an hour of 5-minute readings per sensor


def aarhus_files(folder: Path) -> tuple[Path, Path]:
    """A sensor sheet and an hour of readings, with the Aarhus files' columns and formats."""
    sensors = folder / REAL_SENSORS
    with sensors.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SENSOR_COLUMNS)
        writer.writeheader()
        for n, sensor in enumerate(SENSOR_IDS):
            writer.writerow(
                {c: "x" for c in SENSOR_COLUMNS}
                | {
                    "REPORT_ID": sensor,
                    "POINT_1_LAT": f"{56.15 + n / 100}",
                    "POINT_1_LNG": f"{10.20 + n / 100}",
                    "POINT_2_LAT": "56.2",
                    "POINT_2_LNG": "10.2",
                    "REPORT_NAME": f"AAR_BT_00{n} 4364 4349",
                }
            )
    readings = folder / REAL_READINGS
    start = datetime(2014, 8, 4)
    with readings.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(READING_COLUMNS)
        for sensor in SENSOR_IDS:
            for slot in range(SLOTS):
                at = start + timedelta(minutes=5 * slot)
                writer.writerow([sensor, at.isoformat(), slot % 4, 60 + slot, 57])
    return sensors, readings


def ioc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    return subprocess.run(
        [sys.executable, "-m", "ioc.cli", *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


def cli_env(server: RunningServer, key: str) -> dict[str, str]:
    """What a user has set: the database, the port the server listens on, the key."""
    port = server.url.rsplit(":", 1)[1]
    return {"IOC_DATABASE_URL": server.db_url, "IOC_PORT": port, "IOC_API_KEY": key}


def scalar(url: str, query: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_the_readme_shows_the_aarhus_commands() -> None:
    text = re.sub(r"\s*\\\n\s*", " ", (REPO / "README.md").read_text(encoding="utf-8"))
    assert f"sensors import ../shared/data/traffic/{REAL_SENSORS} {' '.join(SENSORS_IMPORT)}" in (
        text
    )
    assert f"replay ../shared/data/traffic/{REAL_READINGS} {' '.join(REPLAY)}" in text


def test_a_file_in_the_aarhus_layout_replays_with_the_documented_commands(
    server: RunningServer, source_key: str, tmp_path: Path
) -> None:
    sensors, readings = aarhus_files(tmp_path)
    env = cli_env(server, source_key)
    registered = ioc("sensors", "import", str(sensors), *SENSORS_IMPORT, env=env)
    assert registered.returncode == 0, registered.stderr
    assert "registered 3 sensors" in registered.stdout
    # No --url: the server is found on IOC_PORT.
    done = ioc("replay", str(readings), *REPLAY, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    total = len(SENSOR_IDS) * SLOTS
    assert f"sent {total}, accepted {total}, duplicates 0, rejected 0, server errors 0" in (
        done.stdout
    )
    assert "columns not sent: avgMeasuredTime" in done.stdout
    assert " INFO " not in done.stderr
    assert scalar(server.db_url, "SELECT count(*) FROM traffic_readings") == total
    # Local times in Aarhus: summer time, two hours ahead of UTC.
    first = scalar(server.db_url, "SELECT min(observed_at) FROM traffic_readings")
    assert first == datetime(2014, 8, 3, 22, 0, tzinfo=UTC)
    assert scalar(server.db_url, "SELECT min(interval_s) FROM traffic_readings") == 300
    again = ioc("replay", str(readings), *REPLAY, env=env)
    assert f"accepted 0, duplicates {total}" in again.stdout


@pytest.mark.parametrize("folder", [p for p in (REAL_TRAFFIC,) if p is not None])
def test_the_real_aarhus_file_replays_as_shipped(
    folder: Path, server: RunningServer, source_key: str, tmp_path: Path
) -> None:
    """Every real sensor is registered, and the file's first 3,000 rows replay unrefused."""
    head = tmp_path / REAL_READINGS
    with (folder / REAL_READINGS).open(encoding="utf-8") as source, head.open("w") as out:
        for _, line in zip(range(3_001), source, strict=False):
            out.write(line)
    env = cli_env(server, source_key)
    registered = ioc("sensors", "import", str(folder / REAL_SENSORS), *SENSORS_IMPORT, env=env)
    assert registered.returncode == 0, registered.stderr
    assert "registered 449 sensors" in registered.stdout
    done = ioc("replay", str(head), *REPLAY, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sent 3000, accepted 3000, duplicates 0, rejected 0, server errors 0" in done.stdout
    unknown = scalar(
        server.db_url,
        "SELECT count(*) FROM traffic_readings r"
        " WHERE NOT EXISTS (SELECT 1 FROM sensors s WHERE s.sensor_id = r.sensor_id)",
    )
    assert unknown == 0


def test_columns_not_mapped_are_left_out_and_naive_times_get_the_zone(tmp_path: Path) -> None:
    _, readings = aarhus_files(tmp_path)
    options = ReplayOptions(
        url="",
        key="",
        kind="traffic_count",
        columns={"sensor_id": "REPORT_ID", "observed_at": "TIMESTAMP"},
        constants={"interval_s": "300", "vehicle_count": "1"},
        timezone="Europe/Copenhagen",
    )
    dropped: list[str] = []
    first = next(iter(read_events(readings, options, dropped)))
    assert first.number == 2
    assert first.event == {
        "kind": "traffic_count",
        "sensor_id": "158324",
        "observed_at": "2014-08-04T00:00:00+02:00",
        "interval_s": 300,
        "vehicle_count": 1,
    }
    assert dropped == ["vehicleCount", "avgSpeed", "avgMeasuredTime"]
    lines = tmp_path / "events.ndjson"
    winter = reading("S1") | {"observed_at": "2014-12-01T08:00:00"}
    lines.write_text(json.dumps(winter) + "\n", encoding="utf-8")
    (line,) = read_events(lines, ReplayOptions(url="", key="", timezone="Europe/Copenhagen"))
    assert line.event["observed_at"] == "2014-12-01T08:00:00+01:00"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"columns": {"speed": "avgSpeed"}}, "speed: not a field of traffic_count"),
        ({"constants": {"interval": "300"}}, "interval: not a field of traffic_count"),
        ({"timezone": "Europe/Aarhus"}, "unknown time zone 'Europe/Aarhus'"),
    ],
)
def test_bad_replay_options_are_named(options: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(named)):
        ReplayOptions(url="", key="", kind="traffic_count", **options)  # type: ignore[arg-type]


# --- server errors -------------------------------------------------------------------------


def readings_file(path: Path, sensor: str, count: int) -> Path:
    path.write_text(
        "".join(json.dumps(reading(sensor, m)) + "\n" for m in range(count)), encoding="utf-8"
    )
    return path


def take_readings_table_away(db_url: str) -> Callable[[], None]:
    """Writes of readings fail inside the database (500) until the returned call undoes it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE traffic_readings RENAME TO traffic_readings_away")

    def bring_back() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE traffic_readings_away RENAME TO traffic_readings")

    return bring_back


def test_server_errors_are_retried_with_backoff_and_counted(
    server: RunningServer, source_key: str, sensors: list[str], tmp_path: Path
) -> None:
    path = readings_file(tmp_path / "events.ndjson", sensors[0], 10)
    bring_back = take_readings_table_away(server.db_url)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # the database takes writes again before the third attempt
            bring_back()

    options = ReplayOptions(url=server.url, key=source_key, batch_size=5)
    summary = replay_file(path, options, sleep=sleep)
    assert (summary.sent, summary.accepted, summary.server_errors, summary.retried) == (
        10,
        10,
        2,
        2,
    )
    assert summary.complete and waits[1] > waits[0] > 0
    assert "server errors 2 (retried 2)" in str(summary)
    assert scalar(server.db_url, "SELECT count(*) FROM traffic_readings") == 10


def test_a_server_that_keeps_failing_stops_the_replay_with_a_failure_exit(
    server: RunningServer, source_key: str, sensors: list[str], tmp_path: Path
) -> None:
    path = readings_file(tmp_path / "events.ndjson", sensors[0], 20)
    take_readings_table_away(server.db_url)
    env = cli_env(server, source_key)
    done = ioc("replay", str(path), "--batch-size", "5", "--retries", "1", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sent 5, accepted 0, duplicates 0, rejected 0, server errors 2 (retried 1)" in (
        done.stdout
    )
    assert f"{path}:1–5: 5 lines not stored (gave up after 2 attempts)" in done.stdout
    assert "500 internal_error" in done.stdout
    assert "stopped after line 5" in done.stdout
    assert "replay incomplete" in done.stderr
