"""What every benchmark needs: a scratch database, a server in its own process, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import httpx

from ioc.children import stop_child
from ioc.settings import Settings
from ioc.store import migrate
from ioc.store.database import DatabaseLocation, create_database, drop_database, with_dbname


@contextlib.contextmanager
def scratch_database(settings: Settings, label: str) -> Iterator[str]:
    """A migrated database of its own on the configured (or embedded) server, dropped after."""
    with DatabaseLocation(settings) as location:
        admin = with_dbname(location.url, "postgres")
        name = f"ioc_bench_{label}_{os.getpid()}"
        url = create_database(admin, name)
        try:
            migrate.upgrade(url, settings.timescale)
            yield url
        finally:
            drop_database(admin, name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def server_process(database_url: str, **env: str) -> Iterator[ServerProcess]:
    """``ioc serve`` in another process, so client and server do not share an interpreter."""
    port = free_port()
    environment = {
        **os.environ,
        "IOC_DATABASE_URL": database_url,
        "IOC_LOG_LEVEL": "WARNING",
        "IOC_MIGRATE_ON_START": "false",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", "serve", "--port", str(port)], env=environment
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the benchmark server exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not become ready in 60 s")
            time.sleep(0.1)
        yield ServerProcess(url, process)
    finally:
        stop_child(process, 20)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def machine_line(name: str, figures: dict[str, float | int | str]) -> str:
    parts = []
    for key, value in figures.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return f"bench {name}: " + " ".join(parts)


@dataclass
class Posted:
    """What a run of POSTs achieved: events stored, wall time, each request's latency (sorted)."""

    stored: int
    elapsed_s: float
    latencies_s: list[float]
    # (seconds since the start, events stored, latency) per request, in order of completion
    done: list[tuple[float, int, float]] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.stored / self.elapsed_s


async def post_all(
    url: str,
    key: str,
    bodies: list[bytes],
    *,
    path: str,
    content_type: str,
    parallel: int,
    ok: tuple[int, ...] = (200, 201),
) -> Posted:
    """POST every body over ``parallel`` keep-alive connections; any refusal stops the run."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    queue = list(reversed(bodies))
    latencies: list[float] = []
    done: list[tuple[float, int, float]] = []
    stored = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal stored
        while queue:
            body = queue.pop()
            sent = time.perf_counter()
            async with session.post(f"{url}{path}", data=body, headers=headers) as resp:
                answer = await resp.json()
                if resp.status not in ok or answer.get("rejected"):
                    raise RuntimeError(f"refused: {resp.status} {str(answer)[:300]}")
                stored += int(answer.get("accepted", 1))
            finished = time.perf_counter()
            latencies.append(finished - sent)
            done.append((finished - started, int(answer.get("accepted", 1)), finished - sent))

    connector = aiohttp.TCPConnector(limit=parallel)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(parallel)))
        elapsed = time.perf_counter() - started
    return Posted(stored, elapsed, sorted(latencies), done)


def cost_per_event(posted: Posted, first: float, last: float) -> float:
    """Mean request latency per event (µs) over the requests from one share of them to another.

    Requests ran ``parallel`` at a time, so this is not the inverse of the throughput; it is
    comparable between the early and the late requests of one run, which is its use.
    """
    done = posted.done
    chosen = done[int(first * len(done)) : max(int(last * len(done)), int(first * len(done)) + 1)]
    return 1e6 * sum(latency for _, _, latency in chosen) / max(sum(n for _, n, _ in chosen), 1)
