"""Traffic alerts against a running server: silent sensors, congestion, routing, races.

Sensors are registered and recent readings sent through the real API; weeks of history are
COPYed in and the 5-minute aggregate refreshed the way the platform does it. The check runs at
instants set by a manual clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
import shapely
from psycopg_pool import AsyncConnectionPool

from alerting.traffic import LOCK, TrafficCheck, TrafficWatch
from ioc.clock import ManualClock
from ioc.jobs import Maintenance
from ioc.routing.jurisdictions import BoundarySet
from ioc.routing.rules import AgencyConfig, ResponsibilityConfig, RuleConfig, apply_config
from ioc.settings import Settings
from ioc.store.jurisdictions import save_boundary_set
from ioc.store.partitions import PartitionManager
from tests.conftest import RunningServer, auth
from tests.test_ingest_api import NDJSON, ndjson

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
MONDAY_8AM = datetime(2025, 8, 4, 8, 0, tzinfo=HCM)  # the morning rush
FIVE_MIN = timedelta(minutes=5)

WARDS = BoundarySet(
    "ward",
    date(2025, 7, 1),
    ("W1", "W2"),
    ("Phường Tây", "Phường Đông"),
    ("46", "46"),
    (shapely.box(107.50, 16.40, 107.55, 16.45), shapely.box(107.55, 16.40, 107.60, 16.45)),
)
IN_WEST = (107.52, 16.42)
IN_EAST = (107.58, 16.42)
FAR_AWAY = (107.70, 16.42)


# -- set-up helpers ------------------------------------------------------------------------


def register(
    client: httpx.Client, admin_key: str, *sensors: tuple[str, tuple[float, float]]
) -> None:
    body = [
        {"sensor_id": s, "lon": where[0], "lat": where[1], "name": f"Nút giao {s[-1]}"}
        for s, where in sensors
    ]
    answer = client.post("/v1/sensors", json=body, headers=auth(admin_key))
    assert answer.status_code == 200, answer.text


Profile = Callable[[datetime, random.Random], tuple[int, float]]


def usual(at: datetime, rng: random.Random) -> tuple[int, float]:
    """A plausible 5-minute reading: slow and busy in the rush hours, fast and quiet at night."""
    local = at.astimezone(HCM)
    hour = local.hour + local.minute / 60
    rush = math.exp(-((hour - 7.75) ** 2)) + math.exp(-((hour - 17.5) ** 2))
    count = max(0, round(20 + 60 * rush + rng.gauss(0, 5)))
    return count, round(50 - 22 * rush + rng.gauss(0, 2.5), 1)


def steady(at: datetime, rng: random.Random) -> tuple[int, float]:
    """The same traffic all day long."""
    return max(0, round(50 + rng.gauss(0, 5))), round(40 + rng.gauss(0, 2.5), 1)


def post_readings(
    client: httpx.Client,
    key: str,
    sensor: str,
    times: Iterable[datetime],
    speed: float | None = None,
    factor: float = 1.0,
    interval_s: int = 300,
    profile: Profile = usual,
) -> None:
    """Readings through the ingest API: the usual ones, or with the speed or count changed."""
    rng = random.Random(f"recent {sensor}")
    events = []
    for at in times:
        count, usual_speed = profile(at, rng)
        events.append(
            {
                "kind": "traffic_count",
                "sensor_id": sensor,
                "observed_at": at.isoformat(),
                "interval_s": interval_s,
                "vehicle_count": round(count * factor * interval_s / 300),
                "avg_speed_kmh": usual_speed if speed is None else speed,
            }
        )
    answer = client.post("/v1/events/batch", content=ndjson(*events), headers=auth(key) | NDJSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 0, answer.text


def recent(now: datetime, minutes: int = 15) -> list[datetime]:
    """5-minute reading times in the window ending at ``now``: (now - 15 min, now]."""
    return [now - FIVE_MIN * k for k in reversed(range(minutes // 5))]


def write_history(
    server: RunningServer,
    sensors: Iterable[str],
    end: datetime,
    days: int,
    profile: Profile = usual,
    seed: str | None = None,
) -> None:
    """``days`` of 5-minute readings up to ``end`` by COPY, then the aggregate refreshed.

    Sensors given the same ``seed`` get the very same history.
    """
    first = end - timedelta(days=days)

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(server.db_url, autocommit=True) as conn:
            partitions = PartitionManager(enabled=server.platform.backend == "plain")
            await partitions.load(conn)
            await partitions.ensure(conn, "traffic_readings", first, end)
            async with conn.cursor() as cur:
                copy_sql = (
                    "COPY traffic_readings (sensor_id, observed_at, interval_s, vehicle_count,"
                    " avg_speed_kmh) FROM STDIN"
                )
                async with cur.copy(copy_sql) as copy:
                    for sensor in sensors:
                        rng, at = random.Random(f"history {seed or sensor}"), first
                        while at <= end:
                            count, speed = profile(at, rng)
                            await copy.write_row((sensor, at, 300, count, speed))
                            at += FIVE_MIN
            if server.platform.backend == "plain":
                await Maintenance.refresh_aggregates(conn)
            else:
                # Only the buckets just written: a continuous aggregate's refresh costs about
                # a second per day of readings on TimescaleDB, so the window is kept tight.
                await conn.execute(
                    "CALL refresh_continuous_aggregate('traffic_5min', %s, %s)",
                    (first, end + FIVE_MIN),
                )

    # On its own loop and connection, not the server's: weeks of history take longer to
    # write and aggregate than the server loop's 30-second allowance for set-up steps.
    asyncio.run(write())


def watch_of(server: RunningServer, **settings: Any) -> TrafficWatch:
    base: Settings = server.platform.settings
    return TrafficWatch(base.model_copy(update=settings), lambda: server.platform.desk.router)


def check(server: RunningServer, now: datetime, watch: TrafficWatch | None = None) -> TrafficCheck:
    watch = watch or watch_of(server)

    async def run() -> TrafficCheck:
        async with await psycopg.AsyncConnection.connect(server.db_url, autocommit=True) as conn:
            return await watch.check(conn, now)

    return asyncio.run(run())


def alerts(server: RunningServer) -> list[dict[str, Any]]:
    with (
        psycopg.connect(server.db_url) as conn,
        conn.cursor(row_factory=psycopg.rows.dict_row) as cur,
    ):
        cur.execute("SELECT * FROM alerts ORDER BY id")
        return cur.fetchall()


def active(server: RunningServer) -> dict[tuple[str, str], dict[str, Any]]:
    return {(a["subject_id"], a["rule"]): a for a in alerts(server) if a["resolved_at"] is None}


@pytest.fixture
def history(server: RunningServer, client: httpx.Client, admin_key: str) -> RunningServer:
    """Two sensors with four weeks (and a day) of the usual traffic before Monday 7:45."""
    register(client, admin_key, ("HUE-TS-001", IN_WEST), ("HUE-TS-002", IN_EAST))
    write_history(server, ("HUE-TS-001", "HUE-TS-002"), MONDAY_8AM - timedelta(minutes=15), 29)
    return server


# -- silent sensors ------------------------------------------------------------------------


@pytest.mark.parametrize("interval_s", [60, 300])
def test_silent_after_its_intervals_and_clears_on_a_new_reading(
    server: RunningServer,
    client: httpx.Client,
    admin_key: str,
    source_key: str,
    interval_s: int,
) -> None:
    register(client, admin_key, ("HUE-TS-001", IN_WEST))
    clock = ManualClock(MONDAY_8AM)
    post_readings(client, source_key, "HUE-TS-001", [clock.now()], interval_s=interval_s)
    clock.advance(3 * interval_s - 1)
    assert check(server, clock.now()).raised == ()
    clock.advance(1)  # three whole intervals without a reading
    found = check(server, clock.now())
    assert (found.silent, len(found.raised), found.sensors) == (1, 1, 1)
    (alert,) = alerts(server)
    assert (alert["subject_kind"], alert["subject_id"], alert["rule"]) == (
        "sensor",
        "HUE-TS-001",
        "silent",
    )
    assert alert["title"] == (
        "Cảm biến Nút giao 1 (HUE-TS-001) mất tín hiệu: không có số liệu từ 08:00 04/08/2025"
    )
    assert alert["details"]["threshold_s"] == 3 * interval_s
    assert (alert["lon"], alert["lat"], alert["category"]) == (*IN_WEST, "giao_thong")

    clock.advance(30)
    post_readings(client, source_key, "HUE-TS-001", [clock.now()], interval_s=interval_s)
    cleared = check(server, clock.now())
    assert (cleared.silent, cleared.raised, cleared.cleared) == (0, (), (alert["id"],))
    (alert,) = alerts(server)
    assert alert["resolution"] == "cleared" and alert["resolved_at"] == clock.now()


def test_a_sensor_that_never_reported_is_silent_from_its_registration(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    register(client, admin_key, ("HUE-TS-009", IN_EAST))
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT registered_at FROM sensors").fetchone()
    assert row is not None
    clock = ManualClock(row[0])
    clock.advance(3 * 300 - 1)
    assert check(server, clock.now()).silent == 0
    clock.advance(1)
    assert len(check(server, clock.now()).raised) == 1
    (alert,) = alerts(server)
    assert alert["title"].startswith("Cảm biến Nút giao 9 (HUE-TS-009) chưa gửi số liệu nào")
    assert alert["details"]["last_reading_at"] is None


def test_a_sensor_quiet_for_longer_than_the_look_back_still_names_its_last_reading(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    register(client, admin_key, ("HUE-TS-001", IN_WEST))
    last = datetime.now(HCM).replace(second=0, microsecond=0) - timedelta(hours=1)
    write_history(server, ("HUE-TS-001",), last, 1)
    found = check(server, last + timedelta(days=10))
    assert len(found.raised) == 1
    (alert,) = alerts(server)
    assert alert["details"]["last_reading_at"] == last.isoformat()
    assert alert["title"].endswith(f"không có số liệu từ {last:%H:%M %d/%m/%Y}")


# -- at any instant ------------------------------------------------------------------------

WEEK = datetime(2025, 8, 4, 0, 0, tzinfo=HCM)  # Monday 00:00, a week of history from here
TWO_HOURS = timedelta(hours=2)


def week_of_readings() -> list[tuple[str, datetime]]:
    """A week of 5-minute readings: HUE-TS-001 goes quiet three times for two hours,
    HUE-TS-002 never does, HUE-TS-003 starts on the second day and goes quiet once."""
    quiet = {
        "HUE-TS-001": [WEEK + timedelta(days=d, hours=h) for d, h in ((0, 9), (2, 15), (5, 2))],
        "HUE-TS-002": [],
        "HUE-TS-003": [WEEK + timedelta(days=3, hours=20)],
    }
    first = {"HUE-TS-003": WEEK + timedelta(days=1, hours=6)}
    rows = []
    for sensor, gaps in quiet.items():
        at = first.get(sensor, WEEK)
        while at < WEEK + timedelta(days=7):
            if not any(start <= at < start + TWO_HOURS for start in gaps):
                rows.append((sensor, at))
            at += FIVE_MIN
    return sorted(rows, key=lambda r: r[1])


def copy_readings(conn: psycopg.Connection[Any], rows: Iterable[tuple[str, datetime]]) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY traffic_readings (sensor_id, observed_at, interval_s, vehicle_count, avg_speed_kmh)"
            " FROM STDIN"
        ) as copy,
    ):
        for sensor, at in rows:
            copy.write_row((sensor, at, 300, 30, 45.0))


def test_a_check_at_a_past_instant_sees_only_what_was_known_then(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    """Checked after a week is stored, every instant gives what a check while streaming gave."""
    register(client, admin_key, *((f"HUE-TS-00{n}", IN_WEST) for n in (1, 2, 3)))
    readings = week_of_readings()
    ticks = [WEEK + timedelta(minutes=30 * k) for k in range(1, 7 * 48)]

    async def partitions() -> None:
        async with await psycopg.AsyncConnection.connect(server.db_url, autocommit=True) as conn:
            manager = PartitionManager(enabled=server.platform.backend == "plain")
            await manager.load(conn)
            await manager.ensure(conn, "traffic_readings", WEEK, WEEK + timedelta(days=7))

    server.run(partitions())
    watch = watch_of(server)

    def silent_alerts(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT subject_id, raised_at, resolved_at FROM alerts WHERE rule = 'silent'"
            " ORDER BY subject_id, raised_at"
        ).fetchall()

    async def run(streaming: bool) -> list[int]:
        found = []
        async with await psycopg.AsyncConnection.connect(server.db_url, autocommit=True) as conn:
            with psycopg.connect(server.db_url, autocommit=True) as writer:
                sent = 0
                for now in ticks:
                    if streaming:  # the readings arrive as they are observed
                        due = [r for r in readings[sent:] if r[1] <= now]
                        copy_readings(writer, due)
                        sent += len(due)
                    found.append((await watch.check(conn, now)).silent)
        return found

    with psycopg.connect(server.db_url, autocommit=True) as conn:
        # A sensor registered on the Thursday, which never reports.
        conn.execute(
            "INSERT INTO sensors (sensor_id, name, lon, lat, registered_at)"
            " VALUES ('HUE-TS-004', 'Nút giao 4', %s, %s, %s)",
            (*IN_WEST, WEEK + timedelta(days=3, hours=1)),
        )
        streamed = asyncio.run(run(streaming=True))
        raised_while_streaming = silent_alerts(conn)
        conn.execute("DELETE FROM alerts")
        stored = asyncio.run(run(streaming=False))
        raised_afterwards = silent_alerts(conn)
    assert stored == streamed
    assert raised_afterwards == raised_while_streaming
    by_sensor: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for sensor, raised, resolved in raised_afterwards:
        by_sensor.setdefault(sensor, []).append((raised, resolved))
    # Three silences, one silence, none; HUE-TS-003 was not checked before its first reading,
    # HUE-TS-004 not before its registration (then at the first tick 15 minutes on, for good).
    assert [len(by_sensor.get(f"HUE-TS-00{n}", [])) for n in (1, 2, 3, 4)] == [3, 0, 1, 1]
    assert by_sensor["HUE-TS-001"][0] == (
        WEEK + timedelta(hours=9, minutes=30),
        WEEK + timedelta(hours=11),
    )
    assert by_sensor["HUE-TS-004"] == [(WEEK + timedelta(days=3, hours=1, minutes=30), None)]
    # Each two-hour silence is seen at the ticks from 15 minutes in until its end.
    assert sum(stored) == 4 * 3 + sum(1 for t in ticks if t >= by_sensor["HUE-TS-004"][0][0])


# -- congestion ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "trigger", "title"),
    [
        ({"speed": 8.0}, ["speed"], "Ùn tắc tại Nút giao 1 (HUE-TS-001): tốc độ 8 km/h (thường "),
        ({"factor": 3.0}, ["vehicles"], "Lưu lượng tăng bất thường tại Nút giao 1 (HUE-TS-001): "),
    ],
)
def test_congestion_raises_on_a_big_change_and_clears_when_traffic_recovers(
    history: RunningServer,
    client: httpx.Client,
    source_key: str,
    change: dict[str, Any],
    trigger: list[str],
    title: str,
) -> None:
    clock = ManualClock(MONDAY_8AM)
    post_readings(client, source_key, "HUE-TS-001", recent(clock.now()), **change)
    post_readings(client, source_key, "HUE-TS-002", recent(clock.now()))
    found = check(history, clock.now())
    assert (found.congested, len(found.raised), found.silent) == (1, 1, 0)
    alert = active(history)[("HUE-TS-001", "congestion")]
    assert alert["title"].startswith(title)
    details = alert["details"]
    assert details["trigger"] == trigger
    assert details["baseline"]["weeks"] == 4 and details["baseline"]["samples"] == 12
    assert details["recent"]["readings"] == 3
    if trigger == ["speed"]:
        # The usual speed at 8:00 on a Monday, not the day's average.
        assert 24 < details["baseline"]["speed_kmh_mean"] < 34
        assert details["z_speed"] >= 3
    else:
        assert details["z_vehicles"] >= 3

    clock.advance(15 * 60)
    post_readings(client, source_key, "HUE-TS-001", recent(clock.now()))
    post_readings(client, source_key, "HUE-TS-002", recent(clock.now()))
    cleared = check(history, clock.now())
    assert (cleared.congested, cleared.raised, cleared.cleared) == (0, (), (alert["id"],))
    assert active(history) == {}


def test_an_active_congestion_alert_holds_until_traffic_is_well_back(
    server: RunningServer, client: httpx.Client, admin_key: str, source_key: str
) -> None:
    twins = ("HUE-TS-005", "HUE-TS-006")  # the very same history
    register(client, admin_key, *((s, IN_WEST) for s in twins))
    write_history(server, twins, MONDAY_8AM - timedelta(minutes=15), 29, steady, seed="twins")
    clock = ManualClock(MONDAY_8AM)
    post_readings(client, source_key, twins[0], recent(clock.now()), speed=8.0, profile=steady)
    post_readings(client, source_key, twins[1], recent(clock.now()), profile=steady)
    assert check(server, clock.now()).congested == 1
    alert = active(server)[(twins[0], "congestion")]
    baseline = alert["details"]["baseline"]
    scale = max(baseline["speed_kmh_sd"], 0.05 * baseline["speed_kmh_mean"], 1.0)
    # Both 2.25 σ under the usual speed: past the clearing mark (z/2), short of raising (z).
    slower = round(baseline["speed_kmh_mean"] - 2.25 * scale, 1)
    clock.advance(15 * 60)
    for sensor in twins:
        post_readings(client, source_key, sensor, recent(clock.now()), speed=slower, profile=steady)
    held = check(server, clock.now())
    assert (held.congested, held.raised, held.cleared) == (1, (), ())
    clock.advance(15 * 60)
    for sensor in twins:
        post_readings(client, source_key, sensor, recent(clock.now()), profile=steady)
    assert check(server, clock.now()).cleared == (alert["id"],)


def test_a_usual_morning_raises_nothing(
    history: RunningServer, client: httpx.Client, source_key: str
) -> None:
    clock = ManualClock(MONDAY_8AM)
    for sensor in ("HUE-TS-001", "HUE-TS-002"):
        post_readings(client, source_key, sensor, recent(clock.now()))
    found = check(history, clock.now())
    assert (found.sensors, found.silent, found.congested, found.raised) == (2, 0, 0, ())
    assert alerts(history) == []


def test_night_speeds_at_rush_hour_are_not_congestion_the_other_way_round_is(
    history: RunningServer, client: httpx.Client, source_key: str
) -> None:
    """The baseline is the same weekday and time of day: 30 km/h is usual at 8:00, not at 22:00."""
    night = MONDAY_8AM + timedelta(hours=14)
    post_readings(client, source_key, "HUE-TS-001", recent(MONDAY_8AM), speed=30.0)
    post_readings(client, source_key, "HUE-TS-002", recent(night), speed=30.0)
    assert check(history, MONDAY_8AM).congested == 0
    assert check(history, night).congested == 1
    assert [k for k in active(history) if k[1] == "congestion"] == [("HUE-TS-002", "congestion")]


def test_no_history_raises_nothing(
    server: RunningServer, client: httpx.Client, admin_key: str, source_key: str
) -> None:
    register(client, admin_key, ("HUE-TS-001", IN_WEST))
    post_readings(client, source_key, "HUE-TS-001", recent(MONDAY_8AM), speed=5.0, factor=4.0)
    assert check(server, MONDAY_8AM).congested == 0
    assert check(server, MONDAY_8AM, watch_of(server, congestion_min_samples=2)).congested == 0


def test_one_week_of_history_judges_against_earlier_working_days(
    server: RunningServer, client: httpx.Client, admin_key: str, source_key: str
) -> None:
    """One Monday back gives 3 buckets, too few: the five working days before are the baseline."""
    register(client, admin_key, ("HUE-TS-001", IN_WEST))
    write_history(server, ("HUE-TS-001",), MONDAY_8AM - timedelta(minutes=15), 8)
    post_readings(client, source_key, "HUE-TS-001", recent(MONDAY_8AM), speed=5.0)
    assert check(server, MONDAY_8AM).congested == 1
    alert = active(server)[("HUE-TS-001", "congestion")]
    baseline = alert["details"]["baseline"]
    assert (baseline["kind"], baseline["days"], baseline["samples"]) == ("same_day_type", 5, 15)
    assert alert["title"].endswith(
        "so với cùng giờ 5 ngày làm việc (thứ Hai–thứ Sáu) trước đó (chưa đủ số liệu cùng thứ)"
    )
    # With four weeks, the same weekday is the baseline, and the alert says so.
    write_history(server, ("HUE-TS-002",), MONDAY_8AM - timedelta(minutes=15), 29)
    register(client, admin_key, ("HUE-TS-002", IN_WEST))
    post_readings(client, source_key, "HUE-TS-002", recent(MONDAY_8AM), speed=5.0)
    check(server, MONDAY_8AM)
    weekly = active(server)[("HUE-TS-002", "congestion")]
    assert weekly["details"]["baseline"]["kind"] == "same_weekday"
    assert weekly["title"].endswith("so với cùng giờ thứ Hai của 4 tuần trước")


def test_a_weekend_is_not_judged_against_working_days(
    server: RunningServer, client: httpx.Client, admin_key: str, source_key: str
) -> None:
    register(client, admin_key, ("HUE-TS-001", IN_WEST))
    saturday = MONDAY_8AM + timedelta(days=5)
    write_history(server, ("HUE-TS-001",), saturday - timedelta(days=1), 4)  # Monday–Friday
    post_readings(client, source_key, "HUE-TS-001", recent(saturday), speed=5.0, factor=4.0)
    assert check(server, saturday).congested == 0
    # The weekend before, Saturday 8:00 to Sunday 8:00: 1 + 3 buckets at the time of the check.
    write_history(server, ("HUE-TS-001",), saturday - timedelta(days=6), 1)
    assert check(server, saturday, watch_of(server, congestion_min_samples=4)).congested == 1
    baseline = active(server)[("HUE-TS-001", "congestion")]["details"]["baseline"]
    assert (baseline["kind"], baseline["days"], baseline["samples"]) == ("same_day_type", 2, 4)


def test_a_speed_without_vehicles_does_not_count(
    history: RunningServer, client: httpx.Client, source_key: str
) -> None:
    """Counters report a speed with no vehicle passing: that is no sign of congestion."""
    post_readings(client, source_key, "HUE-TS-001", recent(MONDAY_8AM), speed=5.0, factor=0.0)
    post_readings(client, source_key, "HUE-TS-002", recent(MONDAY_8AM), speed=5.0, factor=0.02)
    assert check(history, MONDAY_8AM).congested == 0
    assert check(history, MONDAY_8AM, watch_of(history, congestion_min_vehicles=0)).congested == 2


# -- once and only once --------------------------------------------------------------------


def test_repeated_checks_and_a_restarted_engine_add_nothing(
    history: RunningServer, client: httpx.Client, source_key: str
) -> None:
    clock = ManualClock(MONDAY_8AM)  # HUE-TS-002 has been silent since 7:45
    post_readings(client, source_key, "HUE-TS-001", recent(clock.now()), speed=8.0)
    watch = watch_of(history)
    first = check(history, clock.now(), watch)
    assert len(first.raised) == 2
    for engine in (watch, watch, watch_of(history)):  # the last one: a restarted engine
        again = check(history, clock.now(), engine)
        assert (again.raised, again.cleared, again.silent, again.congested) == ((), (), 1, 1)
    assert set(active(history)) == {("HUE-TS-001", "congestion"), ("HUE-TS-002", "silent")}
    assert len(alerts(history)) == 2


def test_two_engines_checking_at_once_make_one_set_of_alerts(
    history: RunningServer, client: httpx.Client, source_key: str
) -> None:
    clock = ManualClock(MONDAY_8AM)
    post_readings(client, source_key, "HUE-TS-001", recent(clock.now()), speed=8.0)
    engines = (watch_of(history), watch_of(history))

    async def race() -> list[TrafficCheck]:
        conns = [
            await psycopg.AsyncConnection.connect(history.db_url, autocommit=True) for _ in engines
        ]
        try:
            return list(
                await asyncio.gather(
                    *(e.check(c, clock.now()) for e, c in zip(engines, conns, strict=True))
                )
            )
        finally:
            for c in conns:
                await c.close()

    results = asyncio.run(race())
    assert sum(len(r.raised) for r in results) == 2
    assert any(not r.skipped for r in results)
    assert set(active(history)) == {("HUE-TS-001", "congestion"), ("HUE-TS-002", "silent")}
    assert len(alerts(history)) == 2


def test_a_check_skips_while_another_process_holds_the_lock(
    history: RunningServer, client: httpx.Client, source_key: str
) -> None:
    clock = ManualClock(MONDAY_8AM + timedelta(minutes=15))
    with psycopg.connect(history.db_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        assert check(history, clock.now()) == TrafficCheck(skipped=True)
        assert alerts(history) == []
    # The holder's transaction ended with the connection: the next tick does the work.
    assert len(check(history, clock.now()).raised) == 2


# -- routing and delivery ------------------------------------------------------------------


@pytest.fixture
def mapped(server: RunningServer) -> RunningServer:
    """Two wards; the traffic police answer for the west one, nobody for the east one."""
    config = ResponsibilityConfig(
        agencies=[AgencyConfig(code="csgt-tay", name_vi="Cảnh sát giao thông phường Tây")],
        rules=[RuleConfig(agency="csgt-tay", category="giao_thong", jurisdiction_code="W1")],
    )

    async def load() -> None:
        async with server.platform.pool.connection() as conn:
            await save_boundary_set(conn, WARDS, "wards.geojson")
            await apply_config(conn, config)
        await server.platform.reload_routing(force=True)

    server.run(load())
    return server


def test_alerts_go_to_the_agency_of_the_sensors_ward_else_the_fallback(
    mapped: RunningServer, client: httpx.Client, admin_key: str, source_key: str
) -> None:
    places = {"HUE-TS-001": IN_WEST, "HUE-TS-002": IN_EAST, "HUE-TS-003": FAR_AWAY}
    register(client, admin_key, *places.items())
    for sensor in places:
        post_readings(client, source_key, sensor, [MONDAY_8AM])
    assert len(check(mapped, MONDAY_8AM + timedelta(minutes=15)).raised) == 3
    by_sensor = {a["subject_id"]: a for a in alerts(mapped)}
    west, east, far = (by_sensor[s] for s in places)
    assert (west["agency"], west["details"]["routing"]["jurisdiction"]) == ("csgt-tay", "W1")
    # No rule claims traffic in the east ward: the operators' catch-all queue.
    assert (east["agency"], east["details"]["routing"]["jurisdiction"]) == ("ioc", "W2")
    # Outside the map and beyond the nearest-ward distance: unrouted, for an operator.
    assert far["agency"] is None and far["details"]["routing"]["queue"] == "unrouted"
    assert {a["category"] for a in by_sensor.values()} == {"giao_thong"}


def test_raised_and_cleared_alerts_reach_a_listener(
    mapped: RunningServer, client: httpx.Client, admin_key: str, source_key: str
) -> None:
    register(client, admin_key, ("HUE-TS-001", IN_WEST))
    post_readings(client, source_key, "HUE-TS-001", [MONDAY_8AM])
    clock = ManualClock(MONDAY_8AM + timedelta(minutes=15))
    watch = watch_of(mapped)

    async def listen() -> list[dict[str, Any]]:
        async with (
            await psycopg.AsyncConnection.connect(mapped.db_url, autocommit=True) as listener,
            await psycopg.AsyncConnection.connect(mapped.db_url, autocommit=True) as conn,
        ):
            await listener.execute("LISTEN ioc_alerts")
            await watch.check(conn, clock.now())
            await asyncio.to_thread(post_readings, client, source_key, "HUE-TS-001", [clock.now()])
            await watch.check(conn, clock.now())
            # Alert changes are announced in batches (here one alert in each).
            return [
                alert
                async for n in listener.notifies(timeout=30, stop_after=2)
                for alert in json.loads(n.payload)["alerts"]
            ]

    raised, resolved = asyncio.run(listen())
    assert raised["status"] == "active" and resolved["status"] == "resolved"
    for message in (raised, resolved):
        assert (message["subject_kind"], message["subject_id"], message["rule"]) == (
            "sensor",
            "HUE-TS-001",
            "silent",
        )
        assert (message["agency"], message["category"]) == ("csgt-tay", "giao_thong")
    assert resolved["resolution"] == "cleared" and resolved["alert"] == raised["alert"]


# -- the engine loop -----------------------------------------------------------------------


class _Enough(Exception):
    """Ends the engine loop after a number of ticks."""


class TickingClock(ManualClock):
    def __init__(self, start: datetime, ticks: int) -> None:
        super().__init__(start)
        self.ticks = ticks

    async def sleep(self, seconds: float) -> None:
        self.ticks -= 1
        if self.ticks == 0:
            raise _Enough
        await super().sleep(seconds)


def test_the_loop_survives_database_errors_and_raises_once_the_database_allows(
    history: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    watch = watch_of(history, traffic_check_s=60)
    start = MONDAY_8AM + timedelta(minutes=15)

    async def run(read_only: bool) -> None:
        options = {"options": "-c default_transaction_read_only=on"} if read_only else {}
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            history.db_url, kwargs={"autocommit": True, **options}, open=False
        )
        await pool.open(wait=True)
        try:
            with pytest.raises(_Enough):
                await watch.run(pool, TickingClock(start, ticks=3))
        finally:
            await pool.close()

    with caplog.at_level(logging.ERROR, logger="alerting.traffic"):
        # A read-only database refuses the alerts: every tick fails, and the loop goes on.
        asyncio.run(run(read_only=True))
    failures = [r for r in caplog.records if r.getMessage().startswith("traffic check failed")]
    assert len(failures) == 3
    assert failures[0].exc_info and "read-only" in str(failures[0].exc_info[1])
    assert alerts(history) == []
    asyncio.run(run(read_only=False))
    assert len(active(history)) == 2


def test_a_new_database_without_a_baseline_checks_silence_only(
    server: RunningServer, sensors: list[str]
) -> None:
    """The aggregate starts unpopulated: the check must not fail (nor clear congestion)."""
    platform = server.platform
    assert platform.desk is not None
    router = platform.desk.router

    async def check() -> TrafficCheck:
        async with platform.pool.connection() as conn:
            watch = TrafficWatch(platform.settings, lambda: router)
            return await watch.check(conn, datetime.now(HCM) + timedelta(days=1))

    result = server.run(check())
    assert not result.skipped and result.congested == 0 and result.silent == len(sensors)
