"""Simulated traffic counters: where they stand and what one reading looks like."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from ingest import sim_profiles as profiles


@dataclass
class Sensor:
    """One counter and its state between readings."""

    sensor_id: str
    name: str
    lon: float
    lat: float
    peak_per_h: float  # vehicles per hour at the busiest hour
    free_kmh: float  # average speed on empty streets
    jam: tuple[float, float] | None = None  # congestion episode (start, end), epoch seconds
    silent_until: float = 0.0  # epoch seconds; an outage keeps the counter quiet until then

    def public(self) -> dict[str, Any]:
        return {"sensor_id": self.sensor_id, "name": self.name, "lon": self.lon, "lat": self.lat}

    def jam_severity(self, t: float) -> float:
        """0 in free flow, rising to 1 inside a congestion episode, easing off at its end."""
        if self.jam is None:
            return 0.0
        start, end = self.jam
        if t >= end:
            self.jam = None
            return 0.0
        ramp = min(120.0, (end - start) / 4)  # build up and clear over a couple of minutes
        return max(0.0, min(1.0, (t - start) / ramp, (end - t) / ramp))

    def reading(
        self, rng: random.Random, t: float, level: float, interval_s: int
    ) -> dict[str, Any]:
        """One `traffic_count` event at epoch `t`, with `level` the share of peak traffic."""
        jam = self.jam_severity(t)
        # A jam packs more vehicles over the loop while they crawl: count up, speed down hard.
        mean = self.peak_per_h * level * interval_s / 3600 * (1 + 0.9 * jam)
        speed = self.free_kmh * (1 - 0.3 * level**2) * (1 - 0.8 * jam) * rng.gauss(1.0, 0.06)
        occupancy = 100 * (0.03 + 0.3 * level + 0.55 * jam) * rng.gauss(1.0, 0.08)
        return {
            "kind": "traffic_count",
            "sensor_id": self.sensor_id,
            "observed_at": profiles.iso(t),
            "interval_s": interval_s,
            "vehicle_count": poisson(rng, mean),
            "avg_speed_kmh": round(min(max(speed, 2.0), 150.0), 1),
            "occupancy": round(min(max(occupancy, 0.0), 100.0), 1),
            "lane": None,
        }


def make_sensors(rng: random.Random, bbox: profiles.BBox, n: int) -> list[Sensor]:
    """`n` counters gathered around the middle of `bbox`, where the city core is."""
    min_lon, min_lat, max_lon, max_lat = bbox
    cx, cy = (min_lon + max_lon) / 2, (min_lat + max_lat) / 2
    spread = min(max_lon - min_lon, max_lat - min_lat) * 0.2
    pairs = list(itertools.combinations(profiles.STREETS, 2))
    rng.shuffle(pairs)
    names = [f"Cầu {b}" for b in profiles.BRIDGES] + [f"Nút giao {a} – {b}" for a, b in pairs]
    sensors = []
    for k in range(n):
        lon, lat = profiles.point_near(rng, bbox, cx, cy, spread)
        sensors.append(
            Sensor(
                sensor_id=f"HUE-TS-{k + 1:03d}",
                name=names[k] if k < len(names) else f"Điểm đếm số {k + 1}",
                lon=lon,
                lat=lat,
                peak_per_h=rng.uniform(900, 3600),
                free_kmh=rng.uniform(35, 60),
            )
        )
    return sensors


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw; the stdlib has none and numpy's would need a second seeded generator."""
    if mean > 40:  # normal approximation: Knuth's product underflows and slows for large means
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
