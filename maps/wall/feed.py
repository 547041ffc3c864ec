"""The wall's live feed: hub messages turned into what the page draws, in batches.

A ticket notice names only the ticket; the page needs its place and deadline, so the feed
reads the rows of every ticket named since the last batch in one query. Alerts and readings
carry what the page needs and pass through. A dossier notice (a count) has the feed send the
dossier board's figures again, once per batch however many notices it holds; a sensor's alert
has it send the traffic board's sensors again (the chart comes with each catch-up); both are
read once for every page of the process (``maps.wall.shared``). Messages that arrive while a
batch is being read or sent wait for the next one, so a burst costs one query, not one per
notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Final

import msgspec
from psycopg_pool import AsyncConnectionPool

from ioc.live import Subscription
from maps.wall import data as wall_data
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


class WallFeed:
    """Reads one subscription and sends batches to one page until either ends."""

    def __init__(
        self,
        subscription: Subscription,
        pool: AsyncConnectionPool[Any],
        reads: WallReads | None = None,
    ) -> None:
        self._subscription = subscription
        self._pool = pool
        self._reads = reads
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._ended = False

    @property
    def dropped(self) -> bool:
        """The hub dropped the page for falling a whole queue behind."""
        return self._subscription.dropped

    async def _collect(self) -> None:
        try:
            async for text in self._subscription:
                message = json.loads(text)
                self._pending.append(message)
                if len(self._pending) > MAX_PENDING:
                    raise FeedOverflow
                self._wake.set()
        finally:
            self._ended = True
            self._wake.set()

    async def batches(self) -> AsyncIterator[str]:
        """The JSON texts to send, until the subscription ends (or overflows)."""
        collector = asyncio.create_task(self._collect())
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch, self._pending = self._pending, []
                for text in await self._shape(batch):
                    yield text
                if self._ended and not self._pending:
                    break
        finally:
            collector.cancel()
            # A collector that failed (FeedOverflow) raises here, ending the page's feed.
            with contextlib.suppress(asyncio.CancelledError):
                await collector

    async def _shape(self, batch: list[dict[str, Any]]) -> list[str]:
        taken = time.monotonic()  # every notice of the batch was committed before this
        ticket_ids: list[int] = []
        alerts: list[dict[str, Any]] = []
        readings: list[Any] = []
        resync = False
        dossiers = False
        sensor_alerts = False
        for message in batch:
            if "ticket" in message:
                # A departure notice concerns agency queues; the wall sees the ticket move.
                if "from_agency" not in message and isinstance(message["ticket"], int):
                    ticket_ids.append(message["ticket"])
            elif "alert" in message:
                alerts.append(_alert(message))
                sensor_alerts = sensor_alerts or message.get("subject_kind") == "sensor"
            elif "readings" in message:
                readings.extend(message["readings"])
            elif "dossiers" in message:
                dossiers = True
            elif message.get("resync"):
                resync = True
        out: list[str] = []
        if ticket_ids:
            async with self._pool.connection() as conn:
                rows = await wall_data.tickets_by_id(conn, ticket_ids)
            out.append(msgspec.json.encode({"type": "tickets", "tickets": rows}).decode())
        if alerts:
            out.append(msgspec.json.encode({"type": "alerts", "alerts": alerts}).decode())
        if readings:
            out.append(msgspec.json.encode({"type": "readings", "readings": readings}).decode())
        if sensor_alerts and self._reads is not None:
            seen = await self._reads.sensors.after(taken)
            out.append(msgspec.json.encode({"type": "traffic", "traffic": seen}).decode())
        if dossiers and self._reads is not None:
            found = await self._reads.dossiers.after(taken)
            out.append(msgspec.json.encode({"type": "dossiers", "dossiers": found}).decode())
        if resync:
            out.append('{"type": "resync"}')
        return out
