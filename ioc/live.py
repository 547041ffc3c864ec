"""The live hub: one LISTEN connection per process, fanned out to websocket subscribers.

Ticket changes are announced with NOTIFY inside the transaction that made them, so every
server process sharing the database hears every change once it commits. Each process keeps a
single dedicated connection for this (not one per client). Subscribers whose filters are equal
(every operator, say, or the subscribers of one agency) share one bounded queue: each notice is
filtered once per filter and its text kept once, and each subscriber reads the queue from its
own cursor, taking everything queued each time its sender wakes. A subscriber that falls a
whole queue behind is dropped rather than allowed to hold up the others or grow without bound.

Notices carry ``seq``, their number in commit order (ioc/store/livelog.py): a subscriber that
was first sent a replay of the log up to some number skips the live notices it already has.
When the hub's own connection drops, it reconnects and replays the log from the last number it
heard, so its subscribers miss nothing (a resync only when the log no longer reaches back).
A batch notice of alerts (``alerts``) reaches each subscriber with the items its filter takes;
one of tickets (``tickets``) reaches it as the single ticket messages its filter takes, each
with its own number (the notice's ``seq`` is its first; it takes ``items`` numbers)."""

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
from ioc.clock import stop_if_cancelled
from ioc.events.readings import READINGS
from ioc.frames import array_frames
from ioc.store import livelog
from ioc.tickets.opening import CHANNEL as TICKETS

# Everything a live page may show: ticket changes, alerts, and sensor readings.
CHANNELS = (TICKETS, ALERTS, READINGS)

log = logging.getLogger(__name__)

Accept = Callable[[Mapping[str, Any]], bool]


def everything(_: Mapping[str, Any]) -> bool:
    """The filter of a subscriber that takes every message."""
    return True


# Sent to subscribers whose missed notices are gone (the hub was away longer than the log keeps).
RESYNC = json.dumps({"resync": True, "reason": "the live feed reconnected; reload the queue"})


class Subscription:
    """One subscriber: a cursor into the queue it shares with the subscribers of its filter;
    iteration ends when it is dropped (or the hub stops)."""

    def __init__(self, hub: LiveHub, group: _Group) -> None:
        self._hub = hub
        self._group = group
        self.accept: Accept = group.accept
        self.cursor = group.end  # the next message of the group's queue to send
        self.dropped = False
        self.ended = False
        # Notices numbered up to this were already sent (by a replay of the log): skipped.
        self.floor = 0

    def end(self) -> None:
        """End the subscriber's iteration (the backlog is discarded)."""
        self.ended = True
        self._group.wake()

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._messages()

    async def _wait(self) -> bool:
        """Wait until the group's last wake made something new the subscriber's to take;
        False once it has ended."""
        group = self._group
        while self.cursor >= group.woken_end and not self.ended:
            await group.changed()
        return not self.ended

    async def _messages(self) -> AsyncIterator[str]:
        """The messages one at a time."""
        async for texts in self.batches():
            for text in texts:
                yield text

    async def batches(self) -> AsyncIterator[list[str]]:
        """Each time the group wakes, every message queued for the subscriber until then."""
        while await self._wait():
            texts = self._group.since(self.cursor, self.floor)
            self.cursor = self._group.woken_end
            if texts:
                yield texts

    async def frames(self) -> AsyncIterator[list[str]]:
        """As ``batches``, joined into array frames (``ioc.frames``): the subscribers of a
        filter take the same messages at each wake, so the frames are built once for them."""
        while await self._wait():
            frames = self._group.frames_since(self.cursor, self.floor)
            self.cursor = self._group.woken_end
            if frames:
                yield frames


class _Group:
    """The subscribers of one filter: each notice is filtered (and its text kept) once for all
    of them, in a queue they share, each reading it from its own cursor.

    The queue keeps what its slowest subscriber has not yet taken; a subscriber more than
    ``size`` messages behind is dropped (checked when the queue grows past that).
    """

    def __init__(self, accept: Accept, size: int, pace_s: float) -> None:
        self.accept = accept
        self._pace_s = pace_s
        self.members: set[Subscription] = set()
        self._size = size
        self._seqs: list[int] = []
        self._texts: list[str] = []
        self._base = 0  # the number (in the group's count) of the first message kept
        self._waiters: list[asyncio.Future[None]] = []
        self._waking = False
        self._woken_at = 0.0  # the loop's time of the last wake
        self.woken_end = 0  # the end of the queue at the last wake: what subscribers may take
        self._frames_key = (-1, -1, -1)
        self._frames: list[str] = []

    @property
    def end(self) -> int:
        return self._base + len(self._texts)

    def since(self, index: int, floor: int) -> list[str]:
        """The texts from ``index`` to the last wake's end, less the notices numbered up to
        ``floor``."""
        start, stop = index - self._base, self.woken_end - self._base
        if not floor:
            return self._texts[start:stop]
        pairs = zip(self._seqs[start:stop], self._texts[start:stop], strict=True)
        return [text for seq, text in pairs if not seq or seq > floor]

    def frames_since(self, index: int, floor: int) -> list[str]:
        """``since`` as array frames; the last answer is kept for the subscribers that ask the
        same next (they wake together, at the same cursor)."""
        key = (index, self.woken_end, floor)
        if key != self._frames_key:
            self._frames_key, self._frames = key, array_frames(self.since(index, floor))
        return self._frames

    def append(self, seq: int, text: str) -> None:
        self._seqs.append(seq)
        self._texts.append(text)

    def settle(self) -> list[Subscription]:
        """Wake the subscribers (once for all the notices published in this turn of the event
        loop, and at most once every ``pace_s``: the notices of a busy stream go out together,
        in fewer frames); drop (and return) those too far behind, and forget what every
        remaining one has taken."""
        if not self._waking:
            self._waking = True
            loop = asyncio.get_running_loop()
            at = self._woken_at + self._pace_s
            if at > loop.time():
                loop.call_at(at, self.wake)
            else:
                loop.call_soon(self.wake)
        end = self.end
        if end - self._base <= self._size:
            return []
        behind = [s for s in self.members if end - s.cursor > self._size]
        for subscription in behind:
            self.members.discard(subscription)
            subscription.dropped = True
            subscription.ended = True
        low = min((s.cursor for s in self.members), default=end)
        del self._seqs[: low - self._base], self._texts[: low - self._base]
        self._base = low
        return behind

    async def changed(self) -> None:
        """Wait for the next message (or the end of a subscriber)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def wake(self) -> None:
        self._woken_at = asyncio.get_running_loop().time()
        self.woken_end = self.end
        self._waking = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


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
        pace_s: float = 0.0,
        retry_max_s: float = 5.0,
        check_every_s: float = 30.0,
    ) -> None:
        self._conninfo = conninfo
        self._channels = tuple(channels)
        self._queue_size = queue_size
        self._pace_s = pace_s
        self._retry_max_s = retry_max_s
        self._check_every_s = check_every_s
        self._subscribers: set[Subscription] = set()
        self._groups: dict[Accept, _Group] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.dropped_total = 0
        # The newest number published (or known when listening began): of a notice of several
        # items, its last item's.
        self.last_seq = 0
        self._last_text: str | None = None  # the notice holding it, as heard (None: not known)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def filters(self) -> int:
        """How many distinct filters the subscribers have (each notice is filtered once each)."""
        return len(self._groups)

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
        self._groups.clear()

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
        """A new subscriber; those whose filters are equal share one queue (and one filtering
        of each notice), so a filter should be a value, equal for callers who see the same."""
        group = self._groups.get(accept)
        if group is None:
            group = self._groups[accept] = _Group(accept, self._queue_size, self._pace_s)
        subscription = Subscription(self, group)
        group.members.add(subscription)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        group = self._groups.get(subscription.accept)
        if group is not None:
            group.members.discard(subscription)
            if not group.members:
                del self._groups[subscription.accept]

    def publish(self, text: str) -> None:
        """Fan one notice out to the subscribers whose filter takes (some of) it."""
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("live hub: a notification is not JSON; ignored: %.80s", text)
            return
        if not isinstance(message, dict):
            return
        seq = message.get("seq")
        seq = seq if isinstance(seq, int) else 0
        after = self.last_seq
        if seq:
            last = seq + livelog.items(message) - 1
            if last <= after:
                return  # already published (from the log, after a reconnect)
            self.last_seq, self._last_text = last, text
        if self._groups:  # (no subscriber: a batch is not taken apart for nobody)
            self._fan_out(livelog.expand(message, text, after))

    def _fan_out(self, notices: Sequence[tuple[int, dict[str, Any], str]]) -> None:
        """Queue the messages of a notice, each (seq, message, text), for each filter that
        takes them."""
        for group in list(self._groups.values()):
            for seq, message, text in notices:
                try:
                    wanted = livelog.filtered(message, text, group.accept)
                except Exception:
                    log.exception("live hub: a filter failed; message not sent to its subscribers")
                    continue
                if wanted is not None:
                    group.append(seq, wanted[0])
            self._settle(group)

    def _settle(self, group: _Group) -> None:
        for subscription in group.settle():
            self._subscribers.discard(subscription)
            self.dropped_total += 1
            log.warning("live hub: dropped a subscriber %d messages behind", self._queue_size)
        if not group.members and self._groups.get(group.accept) is group:
            del self._groups[group.accept]

    def _broadcast(self, text: str) -> None:
        for group in list(self._groups.values()):
            group.append(0, text)
            self._settle(group)

    async def _catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Publish what was logged while the hub was away (LISTENing again already, so what
        commits from now on arrives as notices; those the replay covered are skipped)."""
        missed = await livelog.replay(conn, self.last_seq, everything)
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
        self._fan_out([(seq, message, text) for seq, text, message in missed.messages])
        if missed.upto > self.last_seq:  # the newest notice as the log holds it, for next time
            self.last_seq = missed.upto
            self._last_text = await livelog.text_at(conn, missed.upto)

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
                stop_if_cancelled()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
