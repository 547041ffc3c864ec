"""Prometheus metrics, one registry per app (so several apps can live in one test process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        for key, help_text in (
            ("pool_size", "connections open in the database pool"),
            ("pool_available", "idle connections in the database pool"),
            ("requests_waiting", "requests waiting for a database connection"),
        ):
            yield GaugeMetricFamily(f"ioc_db_{key}", help_text, value=stats.get(key, 0))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "ioc_events",
            "events by kind, source and outcome (accepted, duplicate, rejected)",
            ["kind", "source", "outcome"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "ioc_ingest_seconds",
            "time to answer an ingest request",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_PoolCollector(stats))

    def observe_events(self, kind: str, source: str, outcome: str, count: int) -> None:
        self.events.labels(kind, source, outcome).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def pool_stats(pool: Any) -> Callable[[], dict[str, int]]:
    def stats() -> dict[str, int]:
        got: dict[str, int] = pool.get_stats()
        return got

    return stats
