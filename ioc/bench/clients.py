"""``ioc bench clients``: what an HTTP client costs the machine that drives a load.

The platform uses two HTTP client libraries: httpx where one request at a time is sent (the
replay command, webhook delivery, the demo, the tests), and aiohttp only to drive the
benchmarks' loads. This measures why: the same POSTs from 32 concurrent tasks to a minimal
server in its own process, with each library; it prints the client CPU per request and the
rate. A load generator on the server's own machine must leave the server its CPU, so the
benchmarks need the cheaper one.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx

from ioc.bench.harness import free_port, machine_line

_BODY = b'{"kind": "traffic_count", "sensor_id": "bench", "vehicle_count": 3}'
_HEADERS = {"content-type": "application/json"}


async def echo_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """The smallest server that reads a body and answers like ingest does (ASGI)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"accepted": 1}'})


def _shares(requests: int, workers: int) -> list[int]:
    """``requests`` split between ``workers`` tasks that each send theirs one after another."""
    return [requests // workers + (i < requests % workers) for i in range(workers)]


async def _with_aiohttp(url: str, requests: int, concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(count: int) -> None:
            for _ in range(count):
                async with session.post(url, data=_BODY, headers=_HEADERS) as answer:
                    await answer.read()

        await asyncio.gather(*(worker(n) for n in _shares(requests, concurrency)))


async def _with_httpx(url: str, requests: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                (await client.post(url, content=_BODY, headers=_HEADERS)).raise_for_status()

        await asyncio.gather(*(worker(n) for n in _shares(requests, concurrency)))


def _timed(run: Callable[[], Awaitable[None]], requests: int) -> tuple[float, float]:
    """(client CPU µs per request, requests per second of wall time)."""
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(run())  # type: ignore[arg-type]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu * 1e6 / requests, requests / wall


def run_clients_bench(requests: int, concurrency: int) -> dict[str, float | int | str]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "ioc.bench.clients:echo_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    )
    url = f"http://127.0.0.1:{port}/v1/events"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url, content=_BODY, headers=_HEADERS, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        results: dict[str, list[tuple[float, float]]] = {"aiohttp": [], "httpx": []}
        for _ in range(2):  # alternate, so a change in the machine's load hits both
            for name, client in (("aiohttp", _with_aiohttp), ("httpx", _with_httpx)):
                results[name].append(
                    _timed(lambda c=client: c(url, requests, concurrency), requests)  # type: ignore[misc]
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    best = {name: min(runs) for name, runs in results.items()}
    for name, (cpu_us, rate) in best.items():
        print(f"{name:8} {cpu_us:8,.0f} µs client CPU per request, {rate:8,.0f} requests/s")
    ratio = best["httpx"][0] / best["aiohttp"][0]
    print(f"httpx costs {ratio:.1f}× the client CPU of aiohttp per request (baseline: aiohttp)")
    figures: dict[str, float | int | str] = {
        "requests": requests,
        "aiohttp_cpu_us": best["aiohttp"][0],
        "httpx_cpu_us": best["httpx"][0],
        "aiohttp_rps": best["aiohttp"][1],
        "httpx_rps": best["httpx"][1],
        "httpx_over_aiohttp": ratio,
    }
    print(machine_line("clients", figures))
    return figures
