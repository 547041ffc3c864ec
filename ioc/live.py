"""The live hub: one LISTEN connection per process, fanned out to websocket subscribers.

Ticket changes are announced with NOTIFY inside the transaction that made them, so every
server process sharing the database hears every change once it commits. Each process keeps a
single dedicated connection for this (not one per client) and copies each message into the
bounded queue of every subscriber whose filter accepts it. A subscriber that falls a whole queue
behind is dropped rather than allowed to hold up the others or grow without bound.

Notices carry ``seq``, their number in commit order (ioc/store/livelog.py): a subscriber that
was first sent a replay of the log up to some number skips the live notices it already has.
When the hub's own connection drops, it reconnects and replays the log from the last number it
heard, so its subscribers miss nothing (a resync only when the log no longer reaches back).
A batch notice (``alerts``) reaches each subscriber with the items its filter takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from ioc.alerts.records import CHANNEL as ALERTS
from ioc.events.intake import READINGS
from ioc.store import livelog
from ioc.tickets.opening import CHANNEL as TICKETS

# Everything a live page may show: ticket changes, alerts, and sensor readings.
CHANNELS = (TICKETS, ALERTS, READINGS)

log = logging.getLogger(__name__)

Accept = Callable[[Mapping[str, Any]], bool]

# Sent to subscribers whose missed notices are gone (the hub was away longer than the log keeps).
RESYNC = json.dumps({"resync": True, "reason": "the live feed reconnected; reload the queue"})


class Subscription:
    """One subscriber's bounded queue of JSON texts; iteration ends when it is dropped."""

    def __init__(self, hub: LiveHub, accept: Accept, size: int) -> None:
        self._hub = hub
        self.accept = accept
        self._queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(size)
        self.dropped = False
        # Notices numbered up to this were already sent (by a replay of the log): skipped.
        self.floor = 0

    def offer(self, text: str, seq: int = 0) -> bool:
        """Queue a message without waiting; False (and dropped) when the queue is full."""
        if self.dropped:
            return False
        try:
            self._queue.put_nowait((seq, text))
        except asyncio.QueueFull:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        self.dropped = True
        self.end()

    def end(self) -> None:
        """End the subscriber's iteration (the backlog is discarded)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            seq, text = item
            if seq and seq <= self.floor:
                continue
            yield text


class LiveHub:
    """LISTENs on ``channels`` over one autocommit connection, reconnecting when it drops.

    Messages are JSON objects; which channel a message came on is told by its keys
    (``ticket``, ``alert``, ``readings``), so subscribers filter on content alone.
    """

    def __init__(
        self,
        conninfo: str,
        channels: Sequence[str] = CHANNELS,
        queue_size: int = 1000,
        retry_max_s: float = 5.0,
        check_every_s: float = 30.0,
    ) -> None:
        self._conninfo = conninfo
        self._channels = tuple(channels)
        self._queue_size = queue_size
        self._retry_max_s = retry_max_s
        self._check_every_s = check_every_s
        self._subscribers: set[Subscription] = set()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.dropped_total = 0
        self.last_seq = 0  # the newest numbered notice published (or known when listening began)
        self._last_text: str | None = None  # that notice as heard (None: known only by number)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def backend_pid(self) -> int | None:
        """The database backend of the LISTEN connection, while connected."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    async def start(self) -> None:
        """Connect and LISTEN (raising if the database cannot be reached), then keep listening."""
        self._conn = await self._connect()
        self.last_seq = await livelog.newest(self._conn)
        self._listening.set()
        self._task = asyncio.create_task(self._run(), name="live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()
        for subscription in list(self._subscribers):
            subscription.end()
        self._subscribers.clear()

    async def wait_listening(self, other_than: int | None = None) -> int:
        """Wait until LISTENing, and caught up from the log, on a connection whose backend is not
        ``other_than``; its pid."""
        while True:
            await self._listening.wait()
            pid = self.backend_pid
            if pid is not None and pid != other_than:
                return pid
            await asyncio.sleep(0.01)

    def subscribe(self, accept: Accept) -> Subscription:
        subscription = Subscription(self, accept, self._queue_size)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, text: str) -> None:
        """Fan one message out to the subscribers whose filter takes it."""
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("live hub: a notification is not JSON; ignored: %.80s", text)
            return
        if not isinstance(message, dict):
            return
        seq = message.get("seq")
        seq = seq if isinstance(seq, int) else 0
        if seq:
            if seq <= self.last_seq:
                return  # already published (from the log, after a reconnect)
            self.last_seq, self._last_text = seq, text
        for subscription in list(self._subscribers):
            try:
                wanted = livelog.filtered(message, text, subscription.accept)
            except Exception:
                log.exception("live hub: a subscriber's filter failed; message not sent to it")
                continue
            if wanted is not None and not subscription.offer(wanted[0], seq):
                self._subscribers.discard(subscription)
                self.dropped_total += 1
                log.warning("live hub: dropped a subscriber %d messages behind", self._queue_size)

    def _broadcast(self, text: str) -> None:
        for subscription in list(self._subscribers):
            if not subscription.offer(text):
                self._subscribers.discard(subscription)
                self.dropped_total += 1

    async def _catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Publish what was logged while the hub was away (LISTENing again already, so what
        commits from now on arrives as notices; those the replay covered are skipped)."""
        missed = await livelog.replay(conn, self.last_seq, lambda _: True)
        # A log that ends before the last number heard lost commits (a failover to a standby
        # that had not received them): numbers will be handed out again, so start over. So
        # does one that holds another notice under that number: it was handed out again
        # between LISTEN and this replay, and a check by number alone would skip it.
        lost = missed.upto < self.last_seq or (
            self._last_text is not None
            and await livelog.text_at(conn, self.last_seq) != self._last_text
        )
        if missed.resync or lost:
            log.warning("live hub: what was missed while away is not in the log; resync")
            self.last_seq, self._last_text = missed.upto, None
            for subscription in self._subscribers:
                subscription.floor = 0
            self._broadcast(RESYNC)
            return
        for _, text, _ in missed.messages:
            self.publish(text)
        self.last_seq = max(self.last_seq, missed.upto)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name="ioc-live"
        )
        try:
            for channel in self._channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _close(self) -> None:
        self._listening.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _run(self) -> None:
        delay = 0.05
        while True:
            conn = self._conn
            try:
                if conn is None:
                    conn = self._conn = await self._connect()
                    log.info("live hub: listening again on %s", ", ".join(self._channels))
                    await self._catch_up(conn)
                    self._listening.set()
                delay = 0.05
                while True:
                    async for note in conn.notifies(timeout=self._check_every_s):
                        self.publish(note.payload)
                    # Quiet for a while: make sure the connection is still alive.
                    await conn.execute("SELECT 1")
            except psycopg.Error as exc:
                log.warning("live hub: connection lost (%s); reconnecting in %.2fs", exc, delay)
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
