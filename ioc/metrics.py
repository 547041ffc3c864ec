"""Prometheus metrics, one registry per app (so several apps can live in one test process).

Across processes: each ``ioc serve`` process is its own scrape target (its ``instance``). The
processes of one ``ioc serve --workers N`` share one port, so a scrape reaches any one of them:
there the serve command sets ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess
mode), every worker writes its samples to files in that directory, and whichever worker answers
sums them all: counters and histograms over every worker that ever ran, gauges over the live ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

_POOL_GAUGES = (
    ("pool_size", "connections open in the database pool"),
    ("pool_available", "idle connections in the database pool"),
    ("requests_waiting", "requests waiting for a database connection"),
)
_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def multiprocess_dir() -> Path | None:
    """The shared metrics directory, when this process is one of several workers."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.shared = multiprocess_dir()
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
        # Gauges sum over the live processes (the pool's connections, the one upkeep leader).
        self._pool = {
            key: Gauge(f"ioc_db_{key}", text, registry=self.registry, multiprocess_mode="livesum")
            for key, text in _POOL_GAUGES
        }
        self.upkeep_leader = Gauge(
            "ioc_upkeep_leader",
            "1 in the process that leads the upkeep (summed: how many lead, normally 1)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._counted: dict[tuple[str, str, str], Any] = {}
        self._timed: dict[str, Any] = {}
        self._stats: Callable[[], dict[str, int]] = dict
        self._leading: Callable[[], bool] = lambda: False

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def watch_leadership(self, leading: Callable[[], bool]) -> None:
        self._leading = leading

    def refresh(self) -> None:
        """Set the gauges from this process's state (at a scrape, and now and then)."""
        stats = self._stats()
        for key, gauge in self._pool.items():
            gauge.set(stats.get(key, 0))
        self.upkeep_leader.set(1 if self._leading() else 0)

    def observe_events(self, kind: str, source: str, outcome: str, count: int) -> None:
        # The counter's child for these labels, looked up once (``labels`` is slow, and runs
        # for every event posted; it hands back the same child every time).
        key = (kind, source, outcome)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self.events.labels(kind, source, outcome)
        child.inc(count)

    def observe_ingest(self, endpoint: str, seconds: float) -> None:
        """The time taken to answer an ingest request (``one``, ``batch``)."""
        child = self._timed.get(endpoint)
        if child is None:
            child = self._timed[endpoint] = self.ingest_seconds.labels(endpoint)
        child.observe(seconds)

    def render(self) -> bytes:
        self.refresh()
        if self.shared is None:
            return generate_latest(self.registry)
        forget_dead_processes(self.shared)
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=str(self.shared))  # type: ignore[no-untyped-call]
        return generate_latest(combined)

    def close(self) -> None:
        """This process is stopping: its live gauges leave the sums."""
        if self.shared is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.shared))  # type: ignore[no-untyped-call]


def forget_dead_processes(directory: Path) -> None:
    """Drop the live-gauge files of workers that died without stopping (e.g. killed)."""
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_FILE.match(path.name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), str(directory))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def shared_between_workers() -> Iterator[Path]:
    """For ``ioc serve --workers N``, around the workers' lifetime: the directory they share
    (``PROMETHEUS_MULTIPROC_DIR`` if set, else a temporary one removed afterwards), emptied of
    an earlier run's files and named in the environment the workers inherit."""
    given = multiprocess_dir()
    with contextlib.ExitStack() as stack:
        if given is None:
            directory = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="ioc-metrics-"))
            )
        else:
            directory = given
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob("*.db"):
                stale.unlink()
        os.environ[MULTIPROC_ENV] = str(directory)
        yield directory


def pool_stats(pool: Any) -> Callable[[], dict[str, int]]:
    def stats() -> dict[str, int]:
        got: dict[str, int] = pool.get_stats()
        return got

    return stats
