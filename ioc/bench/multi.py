"""``ioc bench multi``: does NOTIFY at commit limit ingest when three processes write at once?

PostgreSQL serialises the commits of transactions that NOTIFY (one queue, in commit order),
and our live log numbers its notices at commit under one more lock. Two measurements, in one
run on one scratch database:

1. Through the API: single-reading POSTs (a process writes the ones that arrive together in
   one transaction, with one notice) and small batches, spread over one ``ioc serve`` process,
   then over three, with the live notices on, then off (``ALTER DATABASE … SET
   ioc.live_notices = off``).
2. In the database alone, the ceiling: transactions per second of a one-row INSERT with no
   notice (the baseline), with a bare ``pg_notify``, and with ``ioc_announce`` (live log and
   NOTIFY), from as many connections as the API processes use, with three listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import click
import msgspec
import psycopg
from psycopg import sql

from ioc.bench.harness import (
    ServerProcess,
    machine_line,
    percentile,
    post_all,
    scratch_database,
    server_process,
)
from ioc.bench.ingest import BATCH, NDJSON, _partitions_for, _prepare, readings
from ioc.settings import Settings

_STATEMENTS = {
    "none": None,
    "notify": "SELECT pg_notify('bench_multi', %s)",
    "announce": "SELECT ioc_announce('bench_multi', %s)",
}


@contextlib.contextmanager
def _servers(url: str, count: int) -> Iterator[list[ServerProcess]]:
    with contextlib.ExitStack() as stack:
        env = {"IOC_SLA_ENGINE": "false", "IOC_AGGREGATE_REFRESH_S": "3600"}
        yield [stack.enter_context(server_process(url, **env)) for _ in range(count)]


async def _spread(
    servers: list[ServerProcess], key: str, bodies: list[bytes], parallel: int, batch: bool
) -> tuple[float, list[float]]:
    """POST the bodies spread evenly over the servers; events/s and the latencies."""
    shares = [bodies[n :: len(servers)] for n in range(len(servers))]
    each = max(1, parallel // len(servers))
    started = time.perf_counter()
    done = await asyncio.gather(
        *(
            post_all(
                server.url,
                key,
                share,
                path=BATCH if batch else "/v1/events",
                content_type=NDJSON if batch else "application/json",
                parallel=each,
                ok=(200,) if batch else (201,),
            )
            for server, share in zip(servers, shares, strict=True)
        )
    )
    elapsed = time.perf_counter() - started
    return sum(d.stored for d in done) / elapsed, sorted(x for d in done for x in d.latencies_s)


def _api_round(
    url: str,
    key: str,
    processes: int,
    warm: list[bytes],
    singles: list[bytes],
    batches: list[bytes],
    parallel: int,
) -> dict[str, float]:
    with _servers(url, processes) as servers:
        # Warm up every process (connections, caches), untimed.
        asyncio.run(_spread(servers, key, warm, processes, False))
        single_eps, latencies = asyncio.run(_spread(servers, key, singles, parallel, False))
        batch_eps, _ = asyncio.run(_spread(servers, key, batches, parallel, True))
    return {
        "single_eps": single_eps,
        "single_p99_ms": percentile(latencies, 0.99) * 1000,
        "batch_eps": batch_eps,
    }


def _set_notices(url: str, on: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        name = conn.info.dbname
        statement = "RESET ioc.live_notices" if on else "SET ioc.live_notices = off"
        conn.execute(
            sql.SQL("ALTER DATABASE {} ").format(sql.Identifier(name)) + sql.SQL(statement)
        )


async def _commit_rate(url: str, kind: str, connections: int, each: int) -> float:
    """Transactions per second: a one-row INSERT, plus the ``kind`` of notice."""
    statement = _STATEMENTS[kind]
    payload = msgspec.json.encode({"bench": kind, "pad": "x" * 200}).decode()
    listeners = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(3)]

    async def drain(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("LISTEN bench_multi")
        async for _ in conn.notifies():
            pass

    draining = [asyncio.create_task(drain(c)) for c in listeners]
    writers = [await psycopg.AsyncConnection.connect(url) for _ in range(connections)]

    async def write(conn: psycopg.AsyncConnection[Any]) -> None:
        for n in range(each):
            await conn.execute("INSERT INTO bench_multi (v) VALUES (%s)", (n,))
            if statement is not None:
                await conn.execute(statement, (payload,))
            await conn.commit()

    try:
        started = time.perf_counter()
        await asyncio.gather(*(write(c) for c in writers))
        return connections * each / (time.perf_counter() - started)
    finally:
        for task in draining:
            task.cancel()
        await asyncio.gather(*draining, return_exceptions=True)
        for conn in writers + listeners:
            await conn.close()


def _database_round(url: str, connections: int, each: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_multi (v integer)")
    rates = {kind: asyncio.run(_commit_rate(url, kind, connections, each)) for kind in _STATEMENTS}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_multi")
    return rates


def run_multi_bench(
    settings: Settings, singles: int, batches: int, batch_size: int, parallel: int, commits: int
) -> dict[str, float | int | str]:
    encoder = msgspec.json.Encoder()
    figures: dict[str, float | int | str] = {}
    with scratch_database(settings, "multi") as url:
        key = asyncio.run(_prepare(url))
        # Partitions for every day the rounds write (each round writes days of its own, so
        # nothing is a duplicate of an earlier round).
        asyncio.run(_partitions_for(url, readings(1, 0) + readings(1, 410)))
        for notices in (True, False):
            _set_notices(url, notices)
            label = "on" if notices else "off"
            for processes in (1, 3):
                day = (0 if processes == 1 else 200) + (0 if notices else 100)
                rows = readings(singles + 20 * processes, day)
                bodies = [encoder.encode(r) for r in rows]
                brows = readings(batches * batch_size, day + 1)
                chunks = [
                    b"\n".join(encoder.encode(r) for r in brows[i : i + batch_size])
                    for i in range(0, len(brows), batch_size)
                ]
                click.echo(f"API, {processes} process(es), notices {label} …", err=True)
                got = _api_round(
                    url, key, processes, bodies[singles:], bodies[:singles], chunks, parallel
                )
                for name, value in got.items():
                    figures[f"{name}_{processes}p_notices_{label}"] = round(value, 1)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM live_log").fetchone()
            figures["notices_logged"] = int(row[0]) if row else 0
        _set_notices(url, True)
        click.echo(f"database commit ceiling ({parallel} connections) …", err=True)
        rates = _database_round(url, parallel, commits)
    for kind, rate in rates.items():
        figures[f"db_commits_per_s_{kind}"] = round(rate)
    figures["db_notify_vs_none"] = round(rates["notify"] / rates["none"], 3)
    figures["db_announce_vs_none"] = round(rates["announce"] / rates["none"], 3)
    figures.update(
        singles=singles, batches=batches, batch_size=batch_size, parallel=parallel, commits=commits
    )
    _print(figures)
    return figures


def _print(f: dict[str, float | int | str]) -> None:
    lines = [
        "",
        "ingest through the API, events/s (concurrent single POSTs share a transaction "
        f"and a notice; {f['notices_logged']:,} notices logged with them on):",
    ]
    heads = ("1 process", "3 processes", "1, no notices", "3, no notices")
    lines.append(" " * 16 + "".join(f"{h:>16}" for h in heads))
    for name in ("single_eps", "single_p99_ms", "batch_eps"):
        cells = [f[f"{name}_{p}p_notices_{n}"] for n in ("on", "off") for p in (1, 3)]
        lines.append(f"{name:16}" + "".join(f"{c:>16,}" for c in cells))
    lines.append(
        f"\ndatabase alone, {f['parallel']} connections, one-row transactions per second:\n"
        f"  no notice (baseline) {f['db_commits_per_s_none']:>10,}\n"
        f"  pg_notify            {f['db_commits_per_s_notify']:>10,}  ({f['db_notify_vs_none']:.0%} of the baseline)\n"
        f"  ioc_announce         {f['db_commits_per_s_announce']:>10,}  "
        f"({f['db_announce_vs_none']:.0%}; the live log: numbered, kept, then NOTIFY)"
    )
    click.echo("\n".join(lines))
    click.echo(machine_line("multi", f))
