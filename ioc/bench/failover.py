"""``ioc bench failover``: kill -9 the primary PostgreSQL under steady ingest, and measure.

A Patroni cluster of two PostgreSQL 15 nodes (synchronous replication) runs on this machine
(``ioc.ha.cluster``); several ``ioc serve`` processes use it through a multi-host URL. Field
reports are posted round-robin to them at a steady rate, one per request or in small NDJSON
batches (``ioc.bench.failover_load``), each request retried until it is acknowledged (as a
source would) and every acknowledged report owed, while websocket clients on every process follow the ticket
feed and reload the queue when the feed says it resynchronised. Part-way, the leader's
postmaster gets SIGKILL. Measured: the seconds without service (the first failed request after
the kill to the first acknowledgement after that), acknowledged reports missing afterwards,
duplicate alerts, how long until every client knew every ticket again, and the offered and
acknowledged rates before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import psycopg
from websockets.asyncio.client import ClientConnection, connect

from ioc.bench.failover_load import CATEGORIES, ZONE, Poster
from ioc.bench.harness import server_process
from ioc.ha.cluster import LocalCluster
from ioc.ha.config import SHIPPED, Timing
from ioc.store import migrate
from ioc.store.keys import create_key

# Tickets of the first category (one report in five) are due within seconds, so the SLA
# engines of every process raise due-soon and overdue alerts all through the run (and through
# the failover).
_DEADLINE_HOURS = 0.005
OUTAGE_BAR_S = 30.0
NAN = float("nan")


@dataclass
class FailoverRun:
    servers: int
    clients: int
    rate: float
    per_request: int
    killed: str
    promoted: str
    acked: int
    lost: int
    duplicate_alerts: int
    alerts: int
    outage_s: float  # the longest time after the kill without an acknowledgement
    caught_up_s: float  # the kill → every client knows every ticket acknowledged until then
    clients_behind: int  # clients still missing an acknowledged ticket at the end
    reconnects: int  # feed sockets the server closed (a client too far behind), resumed
    failed_requests: int
    lag_s: float  # the longest a released batch waited for a sender (the platform was slower)
    held_back: int  # reports not sent because a second's worth was already waiting
    offered_before: float  # reports handed to the senders per second, before the kill
    rate_before: float  # reports acknowledged per second, before the kill
    offered_after: float  # the same, once service is back (the last 10 s of the schedule)
    rate_after: float

    def figures(self) -> dict[str, float | int | str]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, float | int | str)}


@dataclass
class _Client:
    """One websocket client's view of the ticket feed."""

    known: dict[int, float] = field(default_factory=dict)  # ticket → when first heard of
    seq: int = 0  # the last live-log number received
    reconnects: int = 0
    closed: str = ""  # why the socket last ended with an error


async def _prepare(url: str) -> tuple[str, str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for category in CATEGORIES[:1]:
            await conn.execute(
                "INSERT INTO deadline_policies (subject, key, unit, amount)"
                " VALUES ('ticket', %s, 'calendar_hours', %s)"
                " ON CONFLICT (subject, key) DO UPDATE SET amount = EXCLUDED.amount",
                (category, _DEADLINE_HOURS),
            )
        source, _ = await create_key(conn, "source", "failover", None, "ioc bench failover")
        operator, _ = await create_key(conn, "operator", None, None, "ioc bench failover")
    return source.token, operator.token


async def _follow(
    client: _Client, servers: list[str], first: int, key: str, since: str, stop: asyncio.Event
) -> None:
    """Follow the ticket feed as a wall client does: when the server closes the socket (a client
    too far behind is dropped), reconnect to the next server with ``?after=<last seq>``; after
    a resync, reload the tickets opened since ``since``."""
    decoder = msgspec.json.Decoder()
    attempt = 0
    while not stop.is_set():
        server = servers[(first + attempt) % len(servers)]
        after = f"&after={client.seq}" if client.seq else ""
        ws_url = server.replace("http://", "ws://") + f"/v1/tickets/ws?api_key={key}{after}"
        try:
            async with connect(ws_url, max_queue=None, ping_interval=None) as socket:
                # One waiter closes the socket at the end (no timer per message: cheap).
                closer = asyncio.create_task(_close_when(stop, socket))
                try:
                    async for text in socket:
                        message = decoder.decode(text)
                        if not isinstance(message, dict):
                            continue
                        if isinstance(seq := message.get("seq"), int):
                            client.seq = max(client.seq, seq)
                        if isinstance(ticket := message.get("ticket"), int):
                            client.known.setdefault(ticket, time.monotonic())
                        elif message.get("resync"):
                            await _reload(client, server, key, since)
                finally:
                    closer.cancel()
        except Exception as exc:
            client.closed = f"{type(exc).__name__}: {exc}"
        if not stop.is_set():
            client.reconnects += 1
            attempt += 1
            await asyncio.sleep(0.2)


async def _close_when(stop: asyncio.Event, socket: ClientConnection) -> None:
    await stop.wait()
    await socket.close()


async def _reload(client: _Client, server: str, key: str, since: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    params: dict[str, str] = {"since": since, "limit": "500"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            async with session.get(f"{server}/v1/tickets", params=params) as answer:
                if answer.status != 200:  # the database is still settling: try again
                    await asyncio.sleep(0.5)
                    continue
                page = await answer.json()
            now = time.monotonic()
            for ticket in page["tickets"]:
                client.known.setdefault(int(ticket["id"]), now)
            if not page.get("next"):
                return
            params["cursor"] = page["next"]


async def _run(
    cluster: LocalCluster,
    servers: list[str],
    keys: tuple[str, str],
    rate: float,
    per_request: int,
    before_s: float,
    after_s: float,
    clients_per_server: int,
) -> FailoverRun:
    source, operator = keys
    start_at = datetime.now(ZONE) - timedelta(minutes=1)
    since = (start_at - timedelta(minutes=1)).isoformat()
    stop = asyncio.Event()
    clients = [_Client() for _ in servers for _ in range(clients_per_server)]
    followers = [
        asyncio.create_task(_follow(c, servers, i, operator, since, stop))
        for i, c in enumerate(clients)
    ]
    await asyncio.sleep(1.0)  # the clients are connected
    poster = Poster(servers, source, rate, per_request)
    posting = asyncio.create_task(poster.run(before_s + after_s))
    await asyncio.sleep(before_s)
    killed = (await asyncio.to_thread(cluster.kill_primary)).name
    killed_at = time.monotonic()
    await posting
    promoted = await asyncio.to_thread(cluster.leader)
    tickets = await _tickets(cluster.url(), poster.acked)
    # Every client should know every acknowledged ticket; give the feeds a moment to deliver.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(tickets.keys() - c.known for c in clients):  # noqa: ASYNC110 (a poll of plain dicts)
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*followers, return_exceptions=True)
    # Without service: the longest time after the kill with no acknowledgement at all (batches
    # in flight on other connections may still be answered just after the first failure).
    acks = sorted([killed_at, *(t for t in poster.acked.values() if t >= killed_at)])
    gap, back = max(((b - a, b) for a, b in itertools.pairwise(acks)), default=(NAN, NAN))
    lost, duplicates, alerts = await _audit(cluster.url(), set(poster.acked))
    # Caught up: every client knows every ticket acknowledged by the time service was back.
    owed = [t for t, at in tickets.items() if at <= back]
    heard = [c.known.get(t, NAN) for c in clients for t in owed]
    # After: the schedule's last 10 s, or from 5 s after service came back when that is later.
    after_from = min(max(back + 5, poster.ended - 10), poster.ended - 1)
    return FailoverRun(
        servers=len(servers),
        clients=len(clients),
        rate=rate,
        per_request=per_request,
        killed=killed,
        promoted=promoted.name if promoted else "none",
        acked=len(poster.acked),
        lost=lost,
        duplicate_alerts=duplicates,
        alerts=alerts,
        outage_s=gap,
        caught_up_s=max(0.0, max(heard, default=killed_at) - killed_at)
        if not math.isnan(back) and not any(math.isnan(h) for h in heard)
        else NAN,
        clients_behind=sum(1 for c in clients if tickets.keys() - c.known),
        reconnects=sum(c.reconnects for c in clients),
        failed_requests=len(poster.failures),
        lag_s=poster.lag_s,
        held_back=poster.held_back,
        offered_before=poster.offered(poster.started + 1, killed_at),
        rate_before=poster.achieved(poster.started + 1, killed_at),
        offered_after=poster.offered(after_from, poster.ended),
        rate_after=poster.achieved(after_from, poster.ended),
    )


async def _tickets(url: str, acked: dict[str, float]) -> dict[int, float]:
    """The tickets of acknowledged reports, each with its first report's acknowledgement."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT external_id, ticket_id FROM field_reports WHERE source = 'failover'"
        )
        tickets: dict[int, float] = {}
        for external_id, ticket in await cur.fetchall():
            if ticket is not None and (at := acked.get(str(external_id))) is not None:
                tickets[int(ticket)] = min(at, tickets.get(int(ticket), at))
        return tickets


async def _audit(url: str, acked: set[str]) -> tuple[int, int, int]:
    """(acknowledged reports not stored, alerts raised more than once, alerts)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT external_id FROM field_reports WHERE source = 'failover'")
        stored = {str(e) for (e,) in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM alerts"
            " GROUP BY subject_kind, subject_id, rule, level HAVING count(*) > 1) twice"
        )
        (duplicates,) = await cur.fetchone() or (0,)
        cur = await conn.execute("SELECT count(*) FROM alerts")
        (alerts,) = await cur.fetchone() or (0,)
    return len(acked - stored), int(duplicates), int(alerts)


@contextlib.contextmanager
def cluster_home(given: Path | None) -> Iterator[Path]:
    """The folder the cluster lives in: ``given``, or a fresh one removed afterwards."""
    if given is not None:
        yield given
        return
    home = Path(tempfile.mkdtemp(prefix="ioc-ha-"))
    home.chmod(0o755)  # as root, the cluster runs as the postgres user, who must reach it
    try:
        yield home
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def measure_failover(
    home: Path,
    *,
    servers: int = 3,
    rate: float = 1000.0,
    per_request: int = 10,
    before_s: float = 15.0,
    after_s: float = 45.0,
    clients_per_server: int = 2,
    timing: Timing = SHIPPED,
    sla_tick_s: float = 1.0,
) -> FailoverRun:
    """Start the cluster under ``home``, run the platform on it, fail it over once, measure."""
    cluster = LocalCluster(home, timing)
    url = cluster.start()
    try:
        # Plain PostgreSQL, as the bars are measured (the cluster preloads TimescaleDB when
        # it is installed, for IOC_TIMESCALE=auto).
        migrate.upgrade(url, "off")
        keys = asyncio.run(_prepare(url))
        env = {"IOC_SLA_TICK_S": str(sla_tick_s), "IOC_LOG_LEVEL": "ERROR", "IOC_TIMESCALE": "off"}
        with contextlib.ExitStack() as stack:
            started = [stack.enter_context(server_process(url, **env)) for _ in range(servers)]
            return asyncio.run(
                _run(
                    cluster,
                    [s.url for s in started],
                    keys,
                    rate,
                    per_request,
                    before_s,
                    after_s,
                    clients_per_server,
                )
            )
    finally:
        cluster.stop()


def report_lines(run: FailoverRun, timing: Timing) -> list[str]:
    ok = run.outage_s <= OUTAGE_BAR_S and run.lost == 0 and run.duplicate_alerts == 0
    # Held: within 5 % of the asked rate, before the kill and again once service is back.
    held = min(run.rate_before, run.rate_after) >= 0.95 * run.rate
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"cluster: 2 × PostgreSQL 15 (synchronous), Patroni ttl {timing.ttl} s, "
        f"loop_wait {timing.loop_wait} s, retry_timeout {timing.retry_timeout} s; "
        f"{run.servers} API processes, {run.clients} websocket clients; pid {os.getpid()}, "
        f"load average {load}",
        f"killed the primary on {run.killed}; {run.promoted} is the leader now",
        f"seconds without service: {run.outage_s:.1f} (bar ≤ {OUTAGE_BAR_S:.0f})",
        f"acknowledged events: {run.acked:,}; lost: {run.lost} (must be 0)",
        f"duplicate alerts: {run.duplicate_alerts} (must be 0) of {run.alerts:,} alerts",
        f"websocket clients caught up {run.caught_up_s:.1f} s after the kill; "
        f"{run.clients_behind} still behind ({run.reconnects} reconnects with ?after=)",
        f"ingest ({run.per_request} per request): before the kill {run.offered_before:,.0f} "
        f"events/s offered, {run.rate_before:,.0f}/s acknowledged; after "
        f"{run.offered_after:,.0f}/s offered, {run.rate_after:,.0f}/s acknowledged "
        f"(asked {run.rate:,.0f}/s: {'held' if held else 'NOT held'}; {run.held_back:,} "
        f"held back while a second's worth waited, the longest wait {run.lag_s:.1f} s); "
        f"{run.failed_requests:,} requests failed and were retried",
        "bar: " + ("met" if ok else "MISSED"),
    ]
