"""The wall's live feed: hub messages turned into what the page draws, in batches.

A ticket notice names only the ticket; the page needs its place and deadline, so the feed
reads the rows of every ticket named since the last batch in one query. Alerts and readings
carry what the page needs and pass through. A dossier notice (a count, and the dossiers' ids
when they fit) has the feed send the dossier board's figures again, once per run however many
notices it holds, with the map-layer rows of the dossiers named (the whole layer when a notice
names none); a sensor's alert has it send the traffic board's sensors again (the chart comes
with each catch-up); boards and the whole layer are read once for every page of the process
(``maps.wall.shared``). Messages that arrive while a
batch is being read or sent wait for the next one, so a burst costs one query, not one per
notice.

Each text sent carries ``seq``, the number of the last notice it covers; a batch is sent as
runs of one type in commit order, so a page that reconnects with ``?after=<seq>`` (to any
server process) is sent exactly what it has not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
from psycopg_pool import AsyncConnectionPool

from ioc.live import Subscription
from ioc.store import livelog
from maps.wall import data as wall_data
from maps.wall import dossiers as wall_dossiers
from maps.wall.shared import WallReads

# A page more notices than this behind is dropped; it reconnects and catches up.
MAX_PENDING: Final = 20_000


class FeedOverflow(Exception):
    """The page fell too far behind the feed."""


def _alert(message: dict[str, Any]) -> dict[str, Any]:
    """An alert notice as the page keeps it (the same fields as the snapshot's rows)."""
    shaped = {name: message.get(name) for name in wall_data.ALERT_COLUMNS if name != "id"}
    shaped["id"] = message.get("alert")
    shaped["status"] = message.get("status")
    for name in ("raised_at", "acked_at"):
        shaped[name] = _millis(shaped[name])
    return shaped


def _millis(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return wall_data.millis(datetime.fromisoformat(text))
    except ValueError:
        return None


async def missed_since(
    pool: AsyncConnectionPool[Any], subscription: Subscription, after: int | None
) -> list[dict[str, Any]]:
    """What a page reconnecting from ``after`` missed (a resync when it is no longer kept);
    the subscription then skips the live notices the replay covered."""
    if after is None:
        return []
    async with pool.connection() as conn:
        replay = await livelog.replay(conn, after, subscription.accept)
    if replay.resync:
        return [{"resync": True}]
    subscription.floor = replay.upto
    return [message for _, _, message in replay.messages]


class WallFeed:
    """Reads one subscription and sends batches to one page until either ends."""

    def __init__(
        self,
        subscription: Subscription,
        pool: AsyncConnectionPool[Any],
        replayed: Sequence[dict[str, Any]] = (),
        reads: WallReads | None = None,
    ) -> None:
        self._subscription = subscription
        self._pool = pool
        self._reads = reads
        # What a reconnecting page missed (from the live log) goes out first.
        self._pending: list[dict[str, Any]] = list(replayed)
        self._wake = asyncio.Event()
        if self._pending:
            self._wake.set()
        self._ended = False

    @property
    def dropped(self) -> bool:
        """The hub dropped the page for falling a whole queue behind."""
        return self._subscription.dropped

    async def _collect(self) -> None:
        try:
            async for texts in self._subscription.batches():
                self._pending.extend(json.loads(text) for text in texts)
                if len(self._pending) > MAX_PENDING:
                    raise FeedOverflow
                self._wake.set()
        finally:
            self._ended = True
            self._wake.set()

    async def batches(self) -> AsyncIterator[list[str]]:
        """The JSON texts to send, a batch at a time, until the subscription ends (or
        overflows)."""
        collector = asyncio.create_task(self._collect())
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch, self._pending = self._pending, []
                texts = await self._shape(batch)
                if texts:
                    yield texts
                if self._ended and not self._pending:
                    break
        finally:
            collector.cancel()
            # A collector that failed (FeedOverflow) raises here, ending the page's feed.
            with contextlib.suppress(asyncio.CancelledError):
                await collector

    async def _places(self, ids: list[str | None], taken: float) -> dict[str, Any]:
        """The layer rows for a run of dossier notices: those named, or all (``all_places``)."""
        assert self._reads is not None
        if None in ids:
            rows = await self._reads.places.after(taken)
            return {"places": rows, "all_places": True}
        async with self._pool.connection() as conn:
            rows = await wall_dossiers.places_by_id(conn, [i for i in ids if i is not None])
        return {"places": rows}

    async def _shape(self, batch: list[dict[str, Any]]) -> list[str]:
        taken = time.monotonic()  # every notice of the batch was committed before this
        runs: list[tuple[str, list[Any], int]] = []  # (type, items, last seq), in commit order
        ticket_ids: list[int] = []
        sensor_alerts = False
        for message in batch:
            seq = message.get("seq")
            seq = seq if isinstance(seq, int) else 0
            items: list[Any]
            if "ticket" in message:
                # A departure notice concerns agency queues; the wall sees the ticket move.
                if "from_agency" in message or not isinstance(message["ticket"], int):
                    kind, items = "skip", []
                else:
                    kind, items = "tickets", [message["ticket"]]
                    ticket_ids.append(message["ticket"])
            elif isinstance(message.get("alerts"), list):  # a batch of alert notices
                notices = [m for m in message["alerts"] if isinstance(m, dict)]
                kind, items = "alerts", [_alert(m) for m in notices]
                sensor_alerts = sensor_alerts or any(
                    m.get("subject_kind") == "sensor" for m in notices
                )
            elif "alert" in message:
                kind, items = "alerts", [_alert(message)]
                sensor_alerts = sensor_alerts or message.get("subject_kind") == "sensor"
            elif "readings" in message:
                kind, items = "readings", list(message["readings"])
            elif "dossiers" in message:
                named = message.get("ids")
                # None stands for "not named": the run then reads the whole layer.
                kind, items = "dossiers", list(named) if isinstance(named, list) else [None]
            elif message.get("resync"):
                kind, items = "resync", []
            else:
                continue
            if runs and runs[-1][0] == kind:
                runs[-1] = (kind, runs[-1][1] + items, max(seq, runs[-1][2]))
            else:
                runs.append((kind, items, seq))
        rows: dict[Any, Any] = {}
        if ticket_ids:
            async with self._pool.connection() as conn:
                found = await wall_data.tickets_by_id(conn, ticket_ids)
            rows = {row[0]: row for row in found}
        out: list[str] = []
        for kind, items, seq in runs:
            shaped: dict[str, Any]
            if kind == "tickets":
                picked = [rows[i] for i in dict.fromkeys(items) if i in rows]
                shaped = {"type": "tickets", "tickets": picked}
            elif kind in ("alerts", "readings"):
                shaped = {"type": kind, kind: items}
            elif kind == "dossiers" and self._reads is not None:
                board = await self._reads.dossiers.after(taken)
                shaped = {"type": "dossiers", "dossiers": board}
                shaped.update(await self._places(items, taken))
            elif kind == "resync":
                shaped = {"type": "resync"}
            else:
                continue
            if seq:
                shaped["seq"] = seq
            out.append(msgspec.json.encode(shaped).decode())
        if sensor_alerts and self._reads is not None:
            seen = await self._reads.sensors.after(taken)
            out.append(msgspec.json.encode({"type": "traffic", "traffic": seen}).decode())
        return out
