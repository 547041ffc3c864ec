"""A seeded simulator that streams a plausible province (field reports, traffic, dossiers).

It is a discrete-event simulation: every future happening sits in one heap ordered by time, so
the events up to a given time do not depend on how often `events_until` is called.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ingest import sim_profiles as profiles
from ingest.sim_dossiers import DossierPlanner
from ingest.sim_profiles import HUE_BBOX, TZ, BBox
from ingest.sim_traffic import make_sensors

__all__ = ["HUE_BBOX", "TZ", "Event", "ProvinceSimulator", "RealClock", "SimClock", "Sink"]

Event = dict[str, Any]
Sink = Callable[[list[Event]], Awaitable[None]]

_N_HOTSPOTS = 6
_BACKGROUND_SHARE = 0.25  # share of reports scattered over the whole area rather than a hotspot
_FLARE_MEAN_S, _QUIET_MEAN_S = 8 * 60.0, 16 * 60.0
# Flaring and quiet rates are chosen so the long-run mean stays at the configured rate:
# duty 1/3 * 2.5 + 2/3 * 0.25 = 1.
_FLARE_GAIN, _QUIET_GAIN = 2.5, 0.25
_MIN_STEP_S, _MAX_STEP_S = 0.2, 5.0  # run(): batch at least this much, look up at least this often


class SimClock(Protocol):
    """Where the simulator reads the time and how it waits."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time in Việt Nam."""

    def now(self) -> datetime:
        return datetime.now(TZ)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class _Hotspot:
    lon: float
    lat: float
    sigma: float  # degrees; 0.01° is about 1 km here
    categories: tuple[str, ...]
    streets: tuple[str, ...]
    ward: str
    flaring: bool = False
    gen: int = 0


@dataclass(order=True)
class _Due:
    t: float
    seq: int
    kind: str = field(compare=False)
    index: int = field(default=0, compare=False)
    gen: int = field(default=0, compare=False)  # hotspot generation; stale arrivals are dropped
    event: Event | None = field(default=None, compare=False)


def _epoch(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError(f"time {t.isoformat()} has no timezone; the simulator needs aware times")
    return t.timestamp()


class ProvinceSimulator:
    """Streams field reports, traffic readings and dossier events for one area, reproducibly."""

    def __init__(
        self,
        clock: SimClock,
        *,
        seed: int = 0,
        bbox: BBox = HUE_BBOX,
        n_sensors: int = 40,
        report_rate_per_s: float = 0.5,
        traffic_interval_s: int = 10,
        dossier_rate_per_s: float = 0.1,
        time_scale: float = 600.0,
        congestion_rate_per_h: float = 4.0,
        outage_rate_per_h: float = 0.5,
        source: str = "simulator",
    ) -> None:
        min_lon, min_lat, max_lon, max_lat = bbox
        if not (min_lon < max_lon and min_lat < max_lat):
            raise ValueError(f"bbox is {bbox}, must be (min_lon, min_lat, max_lon, max_lat)")
        if n_sensors < 0:
            raise ValueError(f"n_sensors is {n_sensors}, must be 0 or more")
        if traffic_interval_s < 1:
            raise ValueError(f"traffic_interval_s is {traffic_interval_s}, must be at least 1")
        if time_scale <= 0:
            raise ValueError(f"time_scale is {time_scale}, must be above 0")
        rates = {
            "report_rate_per_s": report_rate_per_s,
            "dossier_rate_per_s": dossier_rate_per_s,
            "congestion_rate_per_h": congestion_rate_per_h,
            "outage_rate_per_h": outage_rate_per_h,
        }
        for name, rate in rates.items():
            if rate < 0:
                raise ValueError(f"{name} is {rate}, must be 0 or more")
        self.clock = clock
        self.bbox = bbox
        self.source = source
        self.traffic_interval_s = traffic_interval_s
        self.time_scale = time_scale
        self._rng = random.Random(seed)
        self._report_rate = report_rate_per_s
        self._dossier_rate = dossier_rate_per_s
        self._congestion_rate = congestion_rate_per_h / 3600.0
        self._outage_rate = outage_rate_per_h / 3600.0
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._report_no = itertools.count(1)
        self._dossier_event_no = itertools.count(1)
        self._t = _epoch(clock.now())

        self._dossiers = DossierPlanner(self._rng, bbox=bbox, time_scale=time_scale, source=source)
        self._sensors = make_sensors(self._rng, bbox, n_sensors)
        self._hotspots = [self._make_hotspot() for _ in range(_N_HOTSPOTS)]
        for i, spot in enumerate(self._hotspots):
            # Start in the long-run mix (a third flaring) rather than all quiet.
            spot.flaring = self._rng.random() < _FLARE_MEAN_S / (_FLARE_MEAN_S + _QUIET_MEAN_S)
            self._schedule_flare(i)
            self._schedule_report(i)
        self._schedule_report(-1)  # -1: the background source
        if self._sensors:
            first_tick = math.floor(self._t / traffic_interval_s + 1) * traffic_interval_s
            self._push(first_tick, "tick")
            self._schedule_poisson(self._congestion_rate, "jam")
            self._schedule_poisson(self._outage_rate, "outage")
        self._schedule_poisson(self._dossier_rate, "dossier")

    # -- public API -----------------------------------------------------------------------

    def sensors(self) -> list[Event]:
        """The traffic sensors this simulator reports for, to register before streaming."""
        return [s.public() for s in self._sensors]

    def events_until(self, t: datetime) -> list[Event]:
        """Advance the simulation to `t` and return the events due by then, oldest first."""
        end = _epoch(t)
        out: list[Event] = []
        while self._heap and self._heap[0].t <= end:
            due = heapq.heappop(self._heap)
            self._t = due.t
            self._handle(due, out)
        self._t = max(self._t, end)
        return out

    def next_due(self) -> datetime | None:
        """When the next thing happens, or None if nothing is scheduled."""
        return datetime.fromtimestamp(self._heap[0].t, TZ) if self._heap else None

    async def run(
        self,
        sink: Sink,
        *,
        stop: asyncio.Event | None = None,
        max_events: int | None = None,
    ) -> int:
        """Deliver due events to `sink` in batches until `stop` is set or `max_events` are sent.

        Returns how many events were delivered; events due beyond `max_events` are dropped.
        """
        sent = 0

        def finished() -> bool:
            stopped = stop is not None and stop.is_set()
            return stopped or (max_events is not None and sent >= max_events)

        while not finished():
            batch = self.events_until(self.clock.now())
            if max_events is not None:
                batch = batch[: max_events - sent]
            if batch:
                await sink(batch)
                sent += len(batch)
                if finished():
                    break
            wait = _MAX_STEP_S
            if self._heap:
                wait = min(max(self._heap[0].t - self._t, _MIN_STEP_S), _MAX_STEP_S)
            await self._sleep_or_stop(wait, stop)
        return sent

    async def _sleep_or_stop(self, seconds: float, stop: asyncio.Event | None) -> None:
        if stop is None:
            await self.clock.sleep(seconds)
            return
        # Race the nap against the stop signal so a stop does not wait out a long interval.
        nap = asyncio.ensure_future(self.clock.sleep(seconds))
        halt = asyncio.ensure_future(stop.wait())
        _, pending = await asyncio.wait({nap, halt}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- scheduling -----------------------------------------------------------------------

    def _push(self, t: float, kind: str, index: int = 0, event: Event | None = None) -> None:
        heapq.heappush(self._heap, _Due(t, next(self._seq), kind, index, event=event))

    def _push_after(self, delay: float, kind: str, index: int = 0) -> None:
        self._push(self._t + delay, kind, index)

    def _schedule_poisson(self, rate: float, kind: str, index: int = 0) -> None:
        if rate > 0:
            self._push_after(self._rng.expovariate(rate), kind, index)

    def _report_rate_of(self, source: int) -> float:
        if source < 0:
            return self._report_rate * _BACKGROUND_SHARE
        mean = self._report_rate * (1 - _BACKGROUND_SHARE) / _N_HOTSPOTS
        return mean * (_FLARE_GAIN if self._hotspots[source].flaring else _QUIET_GAIN)

    def _schedule_report(self, source: int) -> None:
        rate = self._report_rate_of(source)
        if rate > 0:
            gen = self._hotspots[source].gen if source >= 0 else 0
            t = self._t + self._rng.expovariate(rate)
            heapq.heappush(self._heap, _Due(t, next(self._seq), "report", source, gen=gen))

    def _schedule_flare(self, i: int) -> None:
        mean = _FLARE_MEAN_S if self._hotspots[i].flaring else _QUIET_MEAN_S
        self._push_after(self._rng.expovariate(1.0 / mean), "flare", i)

    def _handle(self, due: _Due, out: list[Event]) -> None:
        if due.kind == "report":
            if due.index >= 0 and due.gen != self._hotspots[due.index].gen:
                return  # drawn at the hotspot's previous rate; a fresh arrival replaced it
            out.append(self._field_report(due.index))
            self._schedule_report(due.index)
        elif due.kind == "flare":
            self._toggle_flare(due.index)
        elif due.kind == "tick":
            local = datetime.fromtimestamp(self._t, TZ)
            hour = local.hour + local.minute / 60 + local.second / 3600
            level = profiles.traffic_level(hour, local.weekday())
            for s in self._sensors:
                if self._t >= s.silent_until:
                    out.append(s.reading(self._rng, self._t, level, self.traffic_interval_s))
            self._push_after(self.traffic_interval_s, "tick")
        elif due.kind == "jam":
            local = datetime.fromtimestamp(self._t, TZ)
            # Thinning: a drawn jam only starts with the chance of the current traffic level,
            # so jams gather in the rush hours.
            if self._rng.random() < profiles.traffic_level(local.hour, local.weekday()):
                sensor = self._rng.choice(self._sensors)
                sensor.jam = (self._t, self._t + self._rng.uniform(5, 25) * 60)
            self._schedule_poisson(self._congestion_rate, "jam")
        elif due.kind == "outage":
            sensor = self._rng.choice(self._sensors)
            sensor.silent_until = self._t + self._rng.uniform(5, 30) * 60
            self._schedule_poisson(self._outage_rate, "outage")
        elif due.kind == "dossier":
            for at, event in self._dossiers.plan(self._t):
                self._push(at, "dossier_step", event=event)
            self._schedule_poisson(self._dossier_rate, "dossier")
        elif due.kind == "dossier_step" and due.event is not None:
            event = dict(due.event)  # the planner left an external_id slot after "source"
            event["external_id"] = f"sim-de-{next(self._dossier_event_no):06d}"
            out.append(event)

    # -- field reports --------------------------------------------------------------------

    def _make_hotspot(self) -> _Hotspot:
        lon, lat = profiles.uniform_point(self._rng, self.bbox, margin=0.15)
        weights = list(profiles.CATEGORY_WEIGHTS.values())
        cats = self._rng.choices(list(profiles.CATEGORY_WEIGHTS), weights=weights, k=2)
        return _Hotspot(
            lon=lon,
            lat=lat,
            sigma=self._rng.uniform(0.002, 0.008),
            categories=tuple(cats),
            streets=tuple(self._rng.sample(profiles.STREETS, 3)),
            ward=self._rng.choice(profiles.WARDS),
        )

    def _toggle_flare(self, i: int) -> None:
        old = self._hotspots[i]
        spot = old
        if not old.flaring and self._rng.random() < 0.3:
            # A quiet spot sometimes gives way to a new incident elsewhere, so the map moves.
            spot = self._hotspots[i] = self._make_hotspot()
        spot.flaring = not old.flaring
        # Arrivals are memoryless, so the pending one can be replaced by one drawn at the new
        # rate; bumping the generation marks the old one stale without searching the heap.
        spot.gen = old.gen + 1
        self._schedule_flare(i)
        self._schedule_report(i)

    def _field_report(self, source: int) -> Event:
        rng = self._rng
        weights = list(profiles.CATEGORY_WEIGHTS.values())
        category = rng.choices(list(profiles.CATEGORY_WEIGHTS), weights=weights)[0]
        if source < 0:
            lon, lat = profiles.uniform_point(rng, self.bbox)
            street, ward = rng.choice(profiles.STREETS), rng.choice(profiles.WARDS)
        else:
            spot = self._hotspots[source]
            if rng.random() < 0.8:  # most reports at a hotspot are about its own trouble
                category = rng.choice(spot.categories)
            lon, lat = profiles.point_near(rng, self.bbox, spot.lon, spot.lat, spot.sigma)
            street, ward = rng.choice(spot.streets), spot.ward
        no = next(self._report_no)
        report: Event = {
            "kind": "field_report",
            "source": self.source,
            "external_id": f"sim-fr-{no:06d}",
            "category": category,
            "description": rng.choice(profiles.DESCRIPTIONS[category]).format(street=street),
            "lon": lon,
            "lat": lat,
            "occurred_at": profiles.iso(self._t),
        }
        if rng.random() < 0.6:
            report["address"] = f"{rng.randint(1, 250)} {street}, {ward}"
        if rng.random() < 0.5:
            name = " ".join(
                rng.choice(part)
                for part in (profiles.FAMILY_NAMES, profiles.MIDDLE_NAMES, profiles.GIVEN_NAMES)
            )
            # 0900 000 xxx: plainly fictitious, so a demo never shows a real person's number.
            report["reporter"] = {"name": name, "phone": f"0900000{rng.randint(0, 999):03d}"}
        if rng.random() < 0.3:
            report["media_urls"] = [
                f"https://example.org/ioc-sim/fr-{no:06d}-{k}.jpg"
                for k in range(1, rng.randint(1, 3) + 1)
            ]
        return report
