"""``ioc bench hostile``: what a hostile client's worst bodies cost everybody else.

A server process on a scratch database, with the documented limits (body bytes, events per
request). First the baseline: ``/healthz`` is probed at a steady pace and the server's RSS is
sampled, with nothing else going on. Then the same probes while another process sends, in a
loop, the worst bodies the limits allow: a full-size body of empty NDJSON lines and of a JSON
array of empty objects (far over the event cap), the most events a batch may hold, as NDJSON
and as a JSON array (each one decoded, checked and refused), JSON nested as deeply as a full-size body allows (a batch, a
single event, the admin configuration), the same over the ingest WebSocket, and full-size bodies
for the endpoints that take small ones (a silence, an Open311 form). The figures are
the p99 of ``/healthz`` and the server's RSS growth over its baseline, with the body that
stalled ``/healthz`` longest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import click
import httpx
import msgspec
import psycopg

from ioc.bench.harness import machine_line, percentile, scratch_database, server_process
from ioc.settings import Settings
from ioc.store.keys import create_key

P99_BAR_MS = 100.0
_OPEN311_POST = "/open311/v2/requests.json"
RSS_BAR_MIB = 64.0


async def _keys(url: str) -> tuple[str, str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        source, _ = await create_key(conn, "source", "bench", None, "ioc bench hostile")
        admin, _ = await create_key(conn, "admin", None, None, "ioc bench hostile")
        return source.token, admin.token


def hostile_bodies(max_bytes: int, max_events: int) -> list[tuple[str, str, str, bytes]]:
    """(label, path, content type, body) of the worst bodies the limits allow."""
    lines = max_bytes // 3 - 1
    refused = {
        "kind": "field_report",
        "external_id": "HOSTILE-0",
        "category": "no_such_category",
        "lon": 107.59,
        "lat": 16.46,
        "occurred_at": "2025-08-01T07:45:00+07:00",
        "description": "",
    }
    per_event = max(0, (max_bytes - 1024) // max_events - len(msgspec.json.encode(refused)) - 1)
    refused["description"] = "x" * per_event
    one = msgspec.json.encode(refused)
    many = b"\n".join([one] * max_events)
    array = b"[" + b",".join([one] * max_events) + b"]"
    depth = max_bytes // 2 - 1
    deep = b"[" * depth + b"]" * depth
    # Full-size bodies for the endpoints that read small bodies (refused once decoded).
    head = b'{"matchers": {"agency": "X"}, "ends_at": "2999-01-01T00:00:00Z", "comment": "'
    silence = head + b"x" * (max_bytes - len(head) - 2) + b'"}'
    form_head = b"service_code=moi_truong&lat=16.46&long=107.58&description="
    form = form_head + b"x" * (max_bytes - len(form_head))
    return [
        ("empty-lines", "/v1/events/batch", "application/x-ndjson", b"{}\n" * lines),
        ("empty-array", "/v1/events/batch", "application/json", b"[" + b"{}," * lines + b"{}]"),
        ("max-events", "/v1/events/batch", "application/x-ndjson", many),
        ("max-events-array", "/v1/events/batch", "application/json", array),
        ("deep-batch", "/v1/events/batch", "application/json", deep),
        ("deep-single", "/v1/events", "application/json", deep),
        ("deep-config", "/v1/admin/config", "application/json", deep),
        ("long-silence", "/v1/silences", "application/json", silence),
        ("long-open311-form", _OPEN311_POST, "application/x-www-form-urlencoded", form),
    ]


def attack(
    url: str,
    keys: tuple[str, str],
    limits: tuple[int, int],
    pid: int,
    stop: Any,
    rounds: Any,
    peaks: Any,
) -> None:
    """Process entry: send the hostile bodies one at a time, round after round, until ``stop``.

    ``rounds`` (shared) counts the finished rounds, -1 while the bodies are being built;
    ``peaks`` (a queue) gets, when done, each body's largest server RSS growth in MiB and
    when each body was sent (wall clock).
    """
    asyncio.run(_attack(url, keys, limits, pid, stop, rounds, peaks))


async def _attack(
    url: str,
    keys: tuple[str, str],
    limits: tuple[int, int],
    pid: int,
    stop: Any,
    rounds: Any,
    peaks: Any,
) -> None:
    source, admin = keys
    bodies = hostile_bodies(*limits)
    by_label = {label: (path, kind, body) for label, path, kind, body in bodies}
    shots = [
        "max-events",
        "max-events-array",
        "ws-max-events",
        "empty-lines",
        "empty-array",
        "deep-batch",
        "deep-single",
        "deep-config",
        "ws-deep-batch",
        "long-silence",
        "long-open311-form",
    ]
    growth: dict[str, float] = {}
    spans: list[tuple[str, float, float]] = []  # (body, wall-clock start, end)
    now: dict[str, Any] = {"label": "", "start": 0.0}

    def sample() -> None:
        while not stop.is_set():
            label = now["label"]
            if label:
                grown = _rss_mib(pid) - float(now["start"])
                growth[str(label)] = max(growth.get(str(label), 0.0), grown)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timeout = aiohttp.ClientTimeout(total=600)
    ws_url = url.replace("http", "ws", 1) + "/v1/events/ws"
    rounds.value = 0
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.ws_connect(
            ws_url, headers={"Authorization": f"Bearer {source}"}, max_msg_size=0
        ) as ws,
    ):
        while not stop.is_set():
            for shot in shots:
                if stop.is_set():
                    break
                now["start"], now["label"] = _rss_mib(pid), shot
                began = time.time()
                if shot.startswith("ws-"):
                    await ws.send_bytes(by_label[shot.removeprefix("ws-")][2])
                    answer = await ws.receive()
                    if answer.type is not aiohttp.WSMsgType.BINARY:
                        raise RuntimeError(f"the ingest socket answered {answer.type!r}")
                else:
                    path, kind, body = by_label[shot]
                    key = admin if shot in ("deep-config", "long-silence") else source
                    headers = {"Authorization": f"Bearer {key}", "Content-Type": kind}
                    method = "PUT" if shot == "deep-config" else "POST"
                    async with session.request(
                        method, f"{url}{path}", data=body, headers=headers
                    ) as r:
                        await r.read()
                        if r.status >= 500:
                            raise RuntimeError(f"{shot}: the server answered {r.status}")
                now["label"] = ""
                spans.append((shot, began, time.time()))
            else:
                rounds.value += 1
    sampler.join()
    peaks.put((growth, spans))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _probe(
    url: str,
    pid: int,
    seconds: float,
    until: Callable[[], bool] = lambda: True,
    sent_at: list[tuple[float, float]] | None = None,
) -> tuple[list[float], float, float]:
    """(sorted /healthz latencies in s, first RSS, peak RSS) over ``seconds`` (and ``until``);
    ``sent_at`` gets each probe's (wall-clock send time, latency)."""
    latencies: list[float] = []
    first = _rss_mib(pid)
    peak = [first]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak.append(max(peak[-1], _rss_mib(pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with httpx.Client(base_url=url, timeout=60) as client:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends or not until():
            sent = time.perf_counter()
            client.get("/healthz").raise_for_status()
            latencies.append(time.perf_counter() - sent)
            if sent_at is not None:
                sent_at.append((time.time() - latencies[-1], latencies[-1]))
            time.sleep(0.02)
    done.set()
    sampler.join()
    return sorted(latencies), first, peak[-1]


def _stalls(
    sent_at: list[tuple[float, float]], spans: list[tuple[str, float, float]]
) -> dict[str, float]:
    """Each body's slowest /healthz probe (ms) among those sent while it was being processed."""
    worst: dict[str, float] = {}
    for label, start, end in spans:
        during = [latency for sent, latency in sent_at if start <= sent <= end]
        if during:
            worst[label] = max(worst.get(label, 0.0), max(during) * 1000)
    return worst


def run_hostile_bench(settings: Settings, seconds: float) -> dict[str, float | int | str]:
    max_bytes, max_events = settings.max_body_bytes, settings.max_batch_events
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with scratch_database(settings, "hostile") as url:
        keys = asyncio.run(_keys(url))
        limits = {
            "IOC_MAX_BODY_BYTES": str(max_bytes),
            "IOC_MAX_BATCH_EVENTS": str(max_events),
            "IOC_WORKERS": "1",
        }
        with server_process(url, **limits) as server:
            pid = server.process.pid
            # Warm the server up once (first decodes, imports, pool), then measure.
            _probe(server.url, pid, 1.0)
            click.echo(f"baseline: /healthz alone for {seconds:g} s …", err=True)
            calm, rss_calm, _ = _probe(server.url, pid, seconds)
            click.echo(
                f"attack: {max_bytes:,}-byte bodies, {max_events:,} events, for {seconds:g} s …",
                err=True,
            )
            context = multiprocessing.get_context("spawn")
            stop, rounds, peaks = context.Event(), context.Value("q", -1), context.Queue()
            attacker = context.Process(
                target=attack,
                args=(server.url, keys, (max_bytes, max_events), pid, stop, rounds, peaks),
                daemon=True,
            )
            attacker.start()
            while rounds.value < 0 and attacker.is_alive():  # the bodies are being built
                time.sleep(0.1)
            # Probe for the time given, and at least until every body has been sent once.
            sent_at: list[tuple[float, float]] = []
            storm, _, rss_peak = _probe(
                server.url,
                pid,
                seconds,
                until=lambda: rounds.value >= 1 or not attacker.is_alive(),
                sent_at=sent_at,
            )
            done_rounds = int(rounds.value)
            stop.set()
            growth: dict[str, float] = {}
            spans: list[tuple[str, float, float]] = []
            with contextlib.suppress(Exception):
                growth, spans = peaks.get(timeout=120)
            attacker.join(60)
            with contextlib.suppress(Exception):
                attacker.kill()
            failed = attacker.exitcode not in (0, None) or not growth
    stalls = _stalls(sent_at, spans)
    for label in sorted(growth):
        click.echo(
            f"  {label}: rss +{growth[label]:.1f} MiB, slowest /healthz "
            f"{stalls.get(label, float('nan')):.1f} ms",
            err=True,
        )
    figures: dict[str, float | int | str] = {
        "healthz_p99_ms": percentile(storm, 0.99) * 1000,
        "healthz_max_ms": storm[-1] * 1000,
        "rss_growth_mib": rss_peak - rss_calm,
        "baseline_healthz_p99_ms": percentile(calm, 0.99) * 1000,
        "baseline_rss_mib": rss_calm,
        "probes": len(storm),
        "rounds": done_rounds,
        "worst_body": max(growth, key=lambda k: growth[k]) if growth else "-",
        "worst_body_rss_mib": max(growth.values(), default=float("nan")),
        "worst_http_body_rss_mib": max(
            (v for k, v in growth.items() if not k.startswith("ws-")), default=float("nan")
        ),
        "worst_stall_body": max(stalls, key=lambda k: stalls[k]) if stalls else "-",
        "worst_stall_ms": max(stalls.values(), default=float("nan")),
        "max_body_bytes": max_bytes,
        "max_events": max_events,
        "attacker": "failed" if failed else "ok",
    }
    within = (
        figures["healthz_p99_ms"] <= P99_BAR_MS  # type: ignore[operator]
        and figures["rss_growth_mib"] <= RSS_BAR_MIB  # type: ignore[operator]
    )
    figures["bars"] = "met" if within and not failed else "missed"
    click.echo(machine_line("hostile", figures))
    return figures
