"""``ioc bench mqtt``: readings through Mosquitto into the store, against HTTP batches.

Separate processes publish the readings at QoS 1 to a Mosquitto broker of our own, paced at
a chosen rate; the subscriber (what ``ioc ingest mqtt`` runs) stores them and notes when each
one's batch committed. Throughput is readings over first publish → last commit; latency is
each reading's publish → commit. The baseline is the same number of readings, shaped alike,
posted as NDJSON batches to ``ioc serve`` in its own process, in the same run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import msgspec
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from alerting.setup import working_calendar
from ingest.mqtt import Message
from ingest.mqtt_setup import subscriber
from ioc.api.body import freeze_startup_heap
from ioc.bench.harness import machine_line, percentile, post_all, scratch_database
from ioc.bench.harness import server_process as http_server
from ioc.bench.ingest import BATCH, NDJSON, readings
from ioc.bench.ingest import _prepare as prepare_sensors_and_key
from ioc.bench.mosquitto import mosquitto
from ioc.bench.mqtt_publisher import publish_paced
from ioc.platform import Platform
from ioc.settings import Settings

BAR = 20_000
_encoder = msgspec.json.Encoder()


def messages(count: int, offset_days: int, per_message: int = 1) -> list[tuple[str, bytes]]:
    """The readings as counters publish them: one per message, the sensor id in the topic and
    the rest as JSON; or, ``per_message`` > 1, as gateways do: arrays of our event JSON."""
    rows = readings(count, offset_days)
    if per_message > 1:
        return [
            (f"ioc/events/gateway-{n % 16}", _encoder.encode(rows[at : at + per_message]))
            for n, at in enumerate(range(0, count, per_message))
        ]
    out = []
    for row in rows:
        sensor = row.pop("sensor_id")
        del row["kind"]
        out.append((f"ioc/traffic/{sensor}", _encoder.encode(row)))
    return out


def publish(
    host: str, port: int, todo: tuple[int, int], rate: float, share: tuple[int, int], out: str
) -> None:
    """Publish share ``(i, k)`` of ``messages(*todo)`` (every k-th from the i-th) at QoS 1,
    paced at ``rate`` messages per second; write each publish time (Unix seconds), then the
    time the broker acknowledged the last one and the CPU seconds publishing took."""
    mine = messages(todo[0], 0, todo[1])[share[0] :: share[1]]
    times = publish_paced(host, port, f"ioc-bench-publisher-{share[0]}", mine, rate)
    with open(out, "wb") as handle:
        times.tofile(handle)


class _Counters:
    """Counts shared by the subscriber processes: how many are subscribed, and how many warm-up
    and measured messages they committed between them."""

    def __init__(self, context: Any) -> None:
        self.subscribed = context.Value("i", 0)
        self.warm = context.Value("i", 0)
        self.done = context.Value("i", 0)
        self.go = context.Event()  # the publishers start: take the CPU clock
        self.stop = context.Event()

    @staticmethod
    def add(value: Any, n: int) -> None:
        with value.get_lock():
            value.value += n


def _recorder(
    todo: list[tuple[str, bytes]], counters: _Counters
) -> tuple[list[float], Callable[[Sequence[Message], float], None]]:
    """Commit times by position in ``todo``, and the ``on_commit`` that fills them in."""
    index = {message: n for n, message in enumerate(todo)}
    committed: list[float] = [0.0] * len(todo)

    def on_commit(batch: Sequence[Message], at: float) -> None:
        warm = new = 0
        for message in batch:
            n = index.get((message.topic, message.payload))
            if n is None:
                warm += 1
            elif not committed[n]:
                committed[n] = at
                new += 1
        if warm:
            counters.add(counters.warm, warm)
        if new:
            counters.add(counters.done, new)

    return committed, on_commit


def member(settings: Settings, todo: tuple[int, int], counters: _Counters, out: str) -> None:
    """One more subscriber of the share group, in its own process: it records its commits and,
    once told to stop, writes their times and its CPU seconds (from ``go`` on) to ``out``."""
    committed, on_commit = _recorder(messages(todo[0], 0, todo[1]), counters)

    async def run() -> float:
        platform = Platform(settings, working_calendar(settings))
        await platform.start()
        freeze_startup_heap()
        ingest = subscriber(platform, on_commit=on_commit)
        task = asyncio.create_task(ingest.run())
        try:
            await asyncio.wait_for(ingest.subscribed.wait(), 30)
            counters.add(counters.subscribed, 1)
            await asyncio.to_thread(counters.go.wait, 600)
            cpu = time.process_time()
            await asyncio.to_thread(counters.stop.wait, 3_600)
            return time.process_time() - cpu
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await platform.stop()

    cpu = asyncio.run(run())
    with open(out, "wb") as handle:
        array("d", [*committed, cpu]).tofile(handle)


async def _until(test: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``test`` (cheap: a shared counter) until true, or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not test():
        if time.monotonic() > deadline:
            raise click.ClickException(f"the MQTT bench gave up waiting: {what}")
        await asyncio.sleep(0.02)


async def _through_mqtt(
    settings: Settings,
    warm: list[tuple[str, bytes]],
    todo: list[tuple[str, bytes]],
    rate: float,
    publishers: int,
    times: Path,
    per_message: int,
    subscribers: int = 1,
) -> tuple[list[float], float]:
    """The commit times of ``todo``, by position (the publishers write the publish times), and
    the subscribers' CPU seconds from the first publish to the last commit. With more than one
    subscriber, the others run in processes of their own, members of one share group."""
    spawn = multiprocessing.get_context("spawn")
    counters = _Counters(spawn)
    committed, on_commit = _recorder(todo, counters)
    others = [
        spawn.Process(
            target=member,
            args=(
                settings.model_copy(update={"mqtt_client_id": f"{settings.mqtt_client_id}-{k}"}),
                (len(todo) * per_message, per_message),
                counters,
                str(times / f"subscriber-{k}"),
            ),
        )
        for k in range(1, subscribers)
    ]
    for process in others:
        process.start()
    platform = Platform(settings, working_calendar(settings))
    await platform.start()
    freeze_startup_heap()  # as ioc serve and ioc ingest mqtt do
    ingest = subscriber(platform, on_commit=on_commit)
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.wait_for(ingest.subscribed.wait(), 30)
        await _until(lambda: counters.subscribed.value >= len(others), 120, "subscribers")
        warmer = paho.Client(CallbackAPIVersion.VERSION2, client_id="ioc-bench-warm-up")
        warmer.connect(ingest.broker.host, ingest.broker.port)
        warmer.loop_start()
        for topic, payload in warm:
            warmer.publish(topic, payload, qos=1)
        await _until(lambda: counters.warm.value >= len(warm), 120, "the warm-up")
        warmer.disconnect()
        warmer.loop_stop()
        processes = [
            spawn.Process(
                target=publish,
                args=(
                    ingest.broker.host,
                    ingest.broker.port,
                    (len(todo) * per_message, per_message),
                    rate / per_message / publishers,
                    (i, publishers),
                    str(times / str(i)),
                ),
            )
            for i in range(publishers)
        ]
        click.echo(
            f"{publishers} processes publishing {len(todo) * per_message:,} readings in "
            f"{len(todo):,} messages at up to {rate:,.0f} readings/s to {subscribers} "
            f"subscriber{'s' if subscribers > 1 else ''} …",
            err=True,
        )
        counters.go.set()
        cpu = time.process_time()
        for process in processes:
            process.start()
        await _until(
            lambda: counters.done.value >= len(todo),
            120 + 20 * len(todo) * per_message / rate,
            "every message committed",
        )
        cpu = time.process_time() - cpu
        for process in processes:
            await asyncio.to_thread(process.join, 300)
    finally:
        counters.stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await platform.stop()
        for process in others:
            await asyncio.to_thread(process.join, 120)
    for k in range(1, subscribers):
        theirs = array("d")
        with (times / f"subscriber-{k}").open("rb") as data:
            theirs.fromfile(data, len(todo) + 1)
        cpu += theirs.pop()
        committed = [
            min(a, b) if a and b else a or b for a, b in zip(committed, theirs, strict=True)
        ]
    return committed, cpu


def _cpu_seconds(pid: int) -> float:
    """A process's user and system CPU time so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM traffic_readings").fetchone()
    return int(row[0]) if row else 0


def run_mqtt_bench(
    settings: Settings,
    count: int,
    rate: float,
    batch_size: int,
    publishers: int,
    per_message: int = 1,
    subscribers: int = 1,
) -> dict[str, float | int | str]:
    with scratch_database(settings, "mqtt") as url, mosquitto() as broker:
        key = asyncio.run(prepare_sensors_and_key(url))
        count -= count % per_message  # whole messages
        warm, todo = messages(2_000, 400, per_message), messages(count, 0, per_message)
        chosen = settings.model_copy(
            update={
                "database_url": url,
                "migrate_on_start": False,
                "mqtt_url": broker.url,
                "mqtt_api_key": key,
                "mqtt_client_id": "ioc-bench",
                "mqtt_batch_size": batch_size,
                "mqtt_routes_file": None,
                "mqtt_share_group": "ioc-bench" if subscribers > 1 else None,
            }
        )
        with tempfile.TemporaryDirectory(prefix="ioc-bench-mqtt-") as scratch:
            times = Path(scratch)
            broker_cpu = _cpu_seconds(broker.process.pid)
            committed, subscriber_cpu = asyncio.run(
                _through_mqtt(chosen, warm, todo, rate, publishers, times, per_message, subscribers)
            )
            published = [0.0] * len(todo)
            broker_cpu = _cpu_seconds(broker.process.pid) - broker_cpu
            acknowledged = 0.0  # when the broker had the last message
            publisher_cpu = 0.0
            for i in range(publishers):
                share = array("d")
                with (times / str(i)).open("rb") as data:
                    share.fromfile(data, len(range(i, len(todo), publishers)) + 2)
                publisher_cpu += share.pop()
                acknowledged = max(acknowledged, share.pop())
                published[i::publishers] = share
        stored = _count(url)
        latencies = sorted(c - p for p, c in zip(published, committed, strict=True))
        elapsed = max(committed) - min(published)
        mqtt_rps = count / elapsed
        publish_rps = count / (acknowledged - min(published))
        click.echo(f"the same number of readings over HTTP, NDJSON batches of {batch_size:,} …")
        rows = readings(count, 200)
        bodies = [
            b"\n".join(_encoder.encode(r) for r in rows[i : i + batch_size])
            for i in range(0, len(rows), batch_size)
        ]
        with http_server(url) as server:
            posted = asyncio.run(
                post_all(server.url, key, bodies, path=BATCH, content_type=NDJSON, parallel=2)
            )
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    lost = 2_000 + count - stored
    figures: dict[str, float | int | str] = {
        "mqtt_readings_per_s": round(mqtt_rps),
        "mqtt_p50_ms": round(p50, 1),
        "mqtt_p99_ms": round(p99, 1),
        "http_batch_readings_per_s": round(posted.per_s),
        "mqtt_vs_http": round(mqtt_rps / posted.per_s, 3),
        "publishers_readings_per_s": round(publish_rps),
        "subscriber_cpu_us_per_reading": round(subscriber_cpu / count * 1e6, 1),
        "publishers_cpu_us_per_reading": round(publisher_cpu / count * 1e6, 1),
        "broker_cpu_us_per_reading": round(broker_cpu / count * 1e6, 1),
        "lost": lost,
        "bar_readings_per_s": BAR,
        "meets_bar": int(mqtt_rps >= BAR and lost == 0),
        "readings": count,
        "publish_rate": round(rate),
        "publishers": publishers,
        "subscribers": subscribers,
        "readings_per_message": per_message,
        "batch_size": batch_size,
    }
    click.echo(
        f"\nMQTT (Mosquitto → {subscribers} subscriber{'s in a share group' if subscribers > 1 else ''}"
        f" → store): {mqtt_rps:,.0f} readings/s, publish → commit "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; {lost} lost  (bar: ≥ {BAR:,}/s)\n"
        f"the publishers alone (first publish → broker's last PUBACK): {publish_rps:,.0f} "
        "readings/s\n"
        f"CPU per reading (little moved by other load): subscriber{'s' if subscribers > 1 else ''} {figures['subscriber_cpu_us_per_reading']}"
        f" µs, publishers {figures['publishers_cpu_us_per_reading']} µs, broker "
        f"{figures['broker_cpu_us_per_reading']} µs\n"
        f"HTTP NDJSON batches, same run:          {posted.per_s:,.0f} readings/s "
        f"(MQTT reaches {mqtt_rps / posted.per_s:.0%} of it)"
    )
    click.echo(machine_line("mqtt", figures))
    return figures
