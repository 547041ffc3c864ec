"""The province simulator: reproducible, well-formed, and shaped like a real province."""

from __future__ import annotations

import asyncio
import collections
import json
import statistics
from datetime import datetime, timedelta
from typing import Any

import pytest

from ingest.sim_profiles import FIELD_REPORT_CATEGORIES, HUE_BBOX
from ingest.simulator import TZ, ProvinceSimulator, RealClock

MONDAY_0700 = datetime(2026, 11, 23, 7, 0, tzinfo=TZ)

# What the one-stop-shop allows after each state; None is "not yet registered". Written out here
# rather than imported so the test checks the simulator against the domain, not against itself.
LEGAL_NEXT: dict[str | None, set[str]] = {
    None: {"registered"},
    "registered": {"accepted", "refused", "withdrawn"},
    "accepted": {"in_processing", "withdrawn"},
    "in_processing": {"supplement_requested", "fee_requested", "processed", "withdrawn", "stopped"},
    "supplement_requested": {"supplement_received", "withdrawn", "stopped"},
    "supplement_received": {"fee_requested", "processed", "withdrawn", "stopped"},
    "fee_requested": {"fee_paid", "withdrawn", "stopped"},
    "fee_paid": {"processed"},
    "processed": {"result_returned"},
    "refused": set(),
    "withdrawn": set(),
    "stopped": set(),
    "result_returned": {"rated"},
    "rated": set(),
}


REQUIRED_FIELDS: dict[str, set[str]] = {
    "field_report": {
        "source", "external_id", "category", "description", "lon", "lat", "occurred_at",
    },
    "traffic_count": {
        "sensor_id", "observed_at", "interval_s", "vehicle_count", "avg_speed_kmh", "lane",
    },
    "dossier_event": {
        "source", "external_id", "dossier_id", "procedure_code", "agency", "event", "at",
        "channel", "online_level", "appointment_at", "paid_online", "digitised",
    },
}  # fmt: skip


class FakeClock:
    """A clock whose sleep moves time forward at once instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


class StuckClock(FakeClock):
    """A clock whose sleep never ends, to show that `stop` does not wait for it."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.Event().wait()


def simulate(hours: float, start: datetime = MONDAY_0700, **kwargs: Any) -> list[dict[str, Any]]:
    sim = ProvinceSimulator(FakeClock(start), **kwargs)
    return sim.events_until(start + timedelta(hours=hours))


def at(event: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(event[key])


def by_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


# -- reproducibility ---------------------------------------------------------------------------


def test_same_seed_gives_the_same_stream() -> None:
    first = simulate(0.5, seed=7)
    assert json.dumps(first) == json.dumps(simulate(0.5, seed=7))
    assert json.dumps(first) != json.dumps(simulate(0.5, seed=8))


def test_stream_does_not_depend_on_how_often_it_is_polled() -> None:
    whole = simulate(0.5, seed=3)
    sim = ProvinceSimulator(FakeClock(MONDAY_0700), seed=3)
    pieces: list[dict[str, Any]] = []
    for step in range(1, 30 * 60 // 7 + 2):
        pieces += sim.events_until(MONDAY_0700 + timedelta(seconds=min(7 * step, 1800)))
    assert pieces == whole


def test_sensors_are_stable_and_named() -> None:
    clock = FakeClock(MONDAY_0700)
    sensors = ProvinceSimulator(clock, seed=1, n_sensors=12).sensors()
    assert sensors == ProvinceSimulator(clock, seed=1, n_sensors=12).sensors()
    assert [s["sensor_id"] for s in sensors] == [f"HUE-TS-{k:03d}" for k in range(1, 13)]
    assert len({s["name"] for s in sensors}) == 12
    min_lon, min_lat, max_lon, max_lat = HUE_BBOX
    assert all(min_lon <= s["lon"] <= max_lon and min_lat <= s["lat"] <= max_lat for s in sensors)


# -- wire format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bbox",
    [HUE_BBOX, (105.75, 20.95, 105.90, 21.10), (107.58, 16.46, 107.60, 16.47)],
    ids=["hue", "hanoi-core", "one-ward"],
)
def test_every_event_is_well_formed_and_inside_the_area(
    bbox: tuple[float, float, float, float],
) -> None:
    events = simulate(1.0, seed=11, bbox=bbox, n_sensors=10, dossier_rate_per_s=0.3)
    min_lon, min_lat, max_lon, max_lat = bbox
    kinds = collections.Counter(e["kind"] for e in events)
    assert set(kinds) == {"field_report", "traffic_count", "dossier_event"}
    for e in events:
        assert REQUIRED_FIELDS[e["kind"]] <= set(e), e
        if "lon" in e:
            assert min_lon <= e["lon"] <= max_lon and min_lat <= e["lat"] <= max_lat, e
    stamps = [e.get("occurred_at") or e.get("observed_at") or e["at"] for e in events]
    times = [datetime.fromisoformat(s) for s in stamps]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(hours=7) for t in times)

    reports = by_kind(events, "field_report")
    assert len({r["external_id"] for r in reports}) == len(reports)
    for r in reports:
        assert r["source"] == "simulator" and r["external_id"].startswith("sim-fr-")
        assert r["category"] in FIELD_REPORT_CATEGORIES and r["description"]
        assert isinstance(r.get("address", ""), str)
        assert set(r.get("reporter", {"name": 1, "phone": 1})) == {"name", "phone"}
        assert all(u.startswith("https://") for u in r.get("media_urls", []))
    assert {"address", "reporter", "media_urls"} <= {k for r in reports for k in r}

    for c in by_kind(events, "traffic_count"):
        assert c["interval_s"] == 10 and c["lane"] is None
        assert isinstance(c["vehicle_count"], int) and c["vehicle_count"] >= 0
        assert 0 <= c["avg_speed_kmh"] <= 150 and 0 <= c["occupancy"] <= 100

    dossier_events = by_kind(events, "dossier_event")
    assert len({d["external_id"] for d in dossier_events}) == len(dossier_events)
    for d in dossier_events:
        assert d["external_id"].startswith("sim-de-") and d["dossier_id"].startswith("H46.")
        assert d["channel"] in {"online", "counter", "kiosk", "bcci", "postal"}
        levels = {"partial", "full_process"} if d["channel"] == "online" else {None}
        assert d["online_level"] in levels
        assert isinstance(d["paid_online"], bool) and isinstance(d["digitised"], bool)
        assert d["event"] in LEGAL_NEXT


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bbox": (107.75, 16.30, 107.40, 16.60)}, "bbox is (107.75"),
        ({"n_sensors": -1}, "n_sensors is -1"),
        ({"traffic_interval_s": 0}, "traffic_interval_s is 0"),
        ({"time_scale": 0}, "time_scale is 0"),
        ({"report_rate_per_s": -0.5}, "report_rate_per_s is -0.5"),
    ],
)
def test_bad_settings_are_named_with_their_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ProvinceSimulator(FakeClock(MONDAY_0700), **kwargs)


def test_naive_times_are_refused() -> None:
    sim = ProvinceSimulator(FakeClock(MONDAY_0700))
    with pytest.raises(ValueError, match="no timezone"):
        sim.events_until(datetime(2026, 11, 23, 8, 0))


def test_real_clock_reads_vietnam_time() -> None:
    assert RealClock().now().utcoffset() == timedelta(hours=7)


# -- field reports -----------------------------------------------------------------------------


def test_reports_arrive_at_the_configured_rate_clustered_in_space_and_time() -> None:
    reports = simulate(6.0, seed=5, n_sensors=0, dossier_rate_per_s=0, report_rate_per_s=0.5)
    assert 0.4 < len(reports) / (6 * 3600) < 0.6
    min_lon, min_lat, max_lon, max_lat = HUE_BBOX
    cells = collections.Counter(
        (
            int((r["lon"] - min_lon) / (max_lon - min_lon) * 19.99),
            int((r["lat"] - min_lat) / (max_lat - min_lat) * 19.99),
        )
        for r in reports
    )
    # Evenly spread, the busiest 4 of 400 cells would hold about 1% of the reports.
    assert sum(n for _, n in cells.most_common(4)) / len(reports) > 0.08
    windows = collections.Counter(
        int((at(r, "occurred_at") - MONDAY_0700).total_seconds() // 300) for r in reports
    )
    counts = [windows.get(w, 0) for w in range(72)]
    # A steady Poisson stream has variance ≈ mean; flaring hotspots make it much burstier.
    assert statistics.variance(counts) / statistics.mean(counts) > 3


# -- traffic -----------------------------------------------------------------------------------


def test_rush_hour_carries_more_traffic_than_the_night() -> None:
    def total(hour: int) -> int:
        start = MONDAY_0700.replace(hour=hour)
        counts = by_kind(simulate(0.25, start=start, seed=2, dossier_rate_per_s=0), "traffic_count")
        return sum(c["vehicle_count"] for c in counts)

    assert total(8) > 4 * total(3)


def test_every_sensor_reports_every_interval_without_outages() -> None:
    counts = by_kind(
        simulate(0.5, seed=4, n_sensors=8, traffic_interval_s=30, outage_rate_per_h=0),
        "traffic_count",
    )
    per_sensor = collections.Counter(c["sensor_id"] for c in counts)
    assert set(per_sensor.values()) == {60}
    assert all(at(c, "observed_at").second % 30 == 0 for c in counts)


def test_outages_leave_gaps() -> None:
    counts = by_kind(simulate(1.0, seed=4, n_sensors=8, outage_rate_per_h=20), "traffic_count")
    per_sensor = collections.Counter(c["sensor_id"] for c in counts)
    assert min(per_sensor.values()) < 360


@pytest.mark.parametrize(("rate", "jammed"), [(0.0, False), (30.0, True)])
def test_congestion_episodes_slow_one_sensor_sharply(rate: float, jammed: bool) -> None:
    counts = by_kind(
        simulate(1.0, seed=9, n_sensors=10, congestion_rate_per_h=rate, outage_rate_per_h=0),
        "traffic_count",
    )
    speeds: dict[str, list[float]] = collections.defaultdict(list)
    for c in counts:
        speeds[c["sensor_id"]].append(c["avg_speed_kmh"])
    crawling = [sid for sid, v in speeds.items() if min(v) < 0.4 * statistics.median(v)]
    assert bool(crawling) is jammed


# -- dossiers ----------------------------------------------------------------------------------


def test_dossiers_follow_legal_transitions_and_some_finish_late() -> None:
    events = simulate(5.0, seed=6, n_sensors=0, report_rate_per_s=0, dossier_rate_per_s=0.1)
    lifecycles: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in events:
        lifecycles[e["dossier_id"]].append(e)
    outcomes: collections.Counter[str] = collections.Counter()
    for dossier_id, steps in lifecycles.items():
        state: str | None = None
        for step in steps:
            assert step["event"] in LEGAL_NEXT[state], (dossier_id, state, step["event"])
            # The appointment is set on acceptance, so only what comes before it has none.
            unaccepted = state in (None, "registered") and step["event"] != "accepted"
            assert (step["appointment_at"] is None) == unaccepted, (dossier_id, step)
            state = step["event"]
        times = [at(s, "at") for s in steps]
        assert times == sorted(times)
        if state == "rated":  # a citizen's rating after the result: 1-5
            assert steps[-1]["rating"] in range(1, 6) and steps[-2]["event"] == "result_returned"
            state = "result_returned"
            steps = steps[:-1]
        if state == "result_returned":
            last = steps[-1]
            outcomes["late" if at(last, "at") > at(last, "appointment_at") else "on_time"] += 1
        else:
            outcomes[str(state)] += 1
    # 5 h at 600× covers the longest procedures, so most dossiers have finished by now.
    assert outcomes["on_time"] > 0.6 * len(lifecycles)
    assert 0 < outcomes["late"] < outcomes["on_time"]
    assert {"refused", "withdrawn", "stopped"} <= set(outcomes)
    seen = {e["event"] for e in events}
    assert {"supplement_requested", "supplement_received", "fee_requested", "fee_paid"} <= seen
    assert "rated" in seen


def test_supplement_pauses_move_the_appointment_later() -> None:
    events = simulate(4.0, seed=12, n_sensors=0, report_rate_per_s=0, dossier_rate_per_s=0.1)
    accepted = {e["dossier_id"]: e["appointment_at"] for e in events if e["event"] == "accepted"}
    received = [e for e in events if e["event"] == "supplement_received"]
    assert received
    assert all(
        datetime.fromisoformat(e["appointment_at"])
        > datetime.fromisoformat(accepted[e["dossier_id"]])
        for e in received
    )


# -- run() -------------------------------------------------------------------------------------


async def _collect(sim: ProvinceSimulator, **kwargs: Any) -> tuple[int, list[list[dict[str, Any]]]]:
    batches: list[list[dict[str, Any]]] = []

    async def sink(batch: list[dict[str, Any]]) -> None:
        batches.append(batch)

    return await sim.run(sink, **kwargs), batches


def test_run_delivers_batches_until_max_events() -> None:
    clock = FakeClock(MONDAY_0700)
    sleeps_at_batch: list[int] = []

    async def sink(batch: list[dict[str, Any]]) -> None:
        sleeps_at_batch.append(len(clock.slept))
        delivered.extend(batch)

    delivered: list[dict[str, Any]] = []
    sent = asyncio.run(ProvinceSimulator(clock, seed=1).run(sink, max_events=500))
    assert sent == 500 == len(delivered)
    assert len(sleeps_at_batch) > 5
    assert clock.t > MONDAY_0700  # time moved by jumping, not waiting
    assert all(0.2 <= s <= 5.0 for s in clock.slept)
    assert len(clock.slept) == sleeps_at_batch[-1]  # returns at once, no nap after the last batch


def test_run_stops_when_the_stop_event_is_set_by_the_sink() -> None:
    async def scenario() -> int:
        stop = asyncio.Event()
        batches = 0

        async def sink(batch: list[dict[str, Any]]) -> None:
            nonlocal batches
            batches += 1
            if batches == 3:
                stop.set()

        await ProvinceSimulator(FakeClock(MONDAY_0700), seed=1).run(sink, stop=stop)
        return batches

    assert asyncio.run(scenario()) == 3


def test_run_does_nothing_when_already_stopped() -> None:
    async def scenario() -> tuple[int, list[list[dict[str, Any]]]]:
        stop = asyncio.Event()
        stop.set()
        return await _collect(ProvinceSimulator(FakeClock(MONDAY_0700)), stop=stop)

    assert asyncio.run(scenario()) == (0, [])


def test_stop_interrupts_a_sleep_in_progress() -> None:
    async def scenario() -> int:
        stop = asyncio.Event()
        sim = ProvinceSimulator(StuckClock(MONDAY_0700), seed=1)
        asyncio.get_running_loop().call_later(0.01, stop.set)
        sent, _ = await asyncio.wait_for(_collect(sim, stop=stop), timeout=2)
        return sent

    assert asyncio.run(scenario()) == 0
