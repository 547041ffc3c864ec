"""MQTT ingest: events from a broker's topics, acknowledged only once the store has them.

The subscriber keeps a persistent session (a fixed client id, clean session off) and takes
QoS 1 messages with manual acknowledgement: a message is acknowledged to the broker after its
event is committed, or refused and published to the dead-letter topic. A subscriber killed in
between gets the unacknowledged messages again when it comes back; the events' own keys (a
reading's sensor and time, a report's source and external id) store each exactly once.

Messages are written in batches through the intake the HTTP API uses: whatever has arrived
makes the next batch, up to ``batch_size``, written while the previous one commits."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import Counter
from psycopg_pool import PoolTimeout

from ingest.mqtt_routes import Refused, Route, dead_letter, event_lines, find_route
from ingest.mqtt_socket import FastClient
from ioc.auth import INGEST_ROLES, Principal
from ioc.clock import stop_if_cancelled
from ioc.errors import ConfigError, IocError, StoreUnavailable
from ioc.events.intake import Intake

if TYPE_CHECKING:
    from ingest.mqtt_setup import BrokerConfig

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
_BACKOFF_S = (0.5, 1, 2, 5, 10, 30)
_ROUTED_TOPICS = 100_000  # topics whose route is remembered
# Batches written at once: the next one is checked and written while the database commits the
# previous one (one at a time, the subscriber would wait for each commit). The broker must let
# as many batches' messages be in flight, and more (its max_inflight_messages).
_COMMITTING = 2

# Where an event is in a batch: (its message, its element in an array or -1 for an object).
Place = tuple[int, int]
Refusals = dict[Place, tuple[str | None, str]]  # (field, reason) of each refused event
Elements = dict[Place, bytes]  # an array's element, for its dead letter
Lines = list[tuple[Place, bytes]]  # events as NDJSON lines
# (token) -> the principal the API key stands for; raises IocError for a bad key.
Authorize = Callable[[str], Awaitable[Principal]]


@dataclass(slots=True)  # not frozen: a frozen dataclass is three times slower to make
class Message:
    """A received message, with the connection it came on (its id means nothing on another)."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    connection: int


class MqttIngest:
    """Subscribes to the routes' topics and stores their events; runs until cancelled."""

    def __init__(
        self,
        broker: BrokerConfig,
        routes: Sequence[Route],
        intake: Intake,
        authorize: Authorize,
        key: str | None,
        counter: Counter,
        *,
        dead_letter_topic: str = "ioc/dead-letter",
        batch_size: int = 5_000,
        share_group: str | None = None,
        on_commit: Callable[[Sequence[Message], float], None] | None = None,
    ) -> None:
        self.broker = broker
        self.routes = tuple(routes)
        self._intake = intake
        self._authorize = authorize
        self._key = key
        self._counter = counter
        self._dead_letter = dead_letter_topic
        self._batch_size = batch_size
        self._share = f"$share/{share_group}/" if share_group else ""
        self._on_commit = on_commit
        self._inbox: deque[Message] = deque()
        self._wake = asyncio.Event()
        self._routed: dict[str, tuple[Route, dict[str, str]] | None] = {}
        self._connection = 0
        self._published: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._fd: int | None = None
        self._writing = False
        self.subscribed = asyncio.Event()  # set while the broker has the subscriptions

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        for key in {r.key or self._key for r in self.routes}:
            await self._principal(key)  # a wrong key stops start-up, not the first batch
        client = self._client()
        keeper = asyncio.create_task(self._keep_connected(client), name="mqtt-connection")
        committing: deque[asyncio.Task[None]] = deque()
        try:
            while True:
                batch = await self._take()
                previous = committing[-1] if committing else None
                committing.append(asyncio.create_task(self._handle(client, batch, previous)))
                while committing and (committing[0].done() or len(committing) >= _COMMITTING):
                    await committing.popleft()  # raises what the batch's task raised
        finally:
            for task in (keeper, *committing):
                task.cancel()
            await asyncio.gather(keeper, *committing, return_exceptions=True)
            if self._fd is not None:
                client.disconnect()
                client.loop_write()  # sends DISCONNECT; paho then closes the socket
            if self._fd is not None:
                self._unwatch(self._fd)

    # --- the broker side: paho driven by the event loop (no thread of its own) ----------------

    def _client(self) -> FastClient:
        client = FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.broker.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        client.max_queued_messages_set(0)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set(
                ca_certs=str(self.broker.ca_file) if self.broker.ca_file else None,
                certfile=str(self.broker.cert_file) if self.broker.cert_file else None,
                keyfile=str(self.broker.key_file) if self.broker.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = lambda *_: self.subscribed.set()
        # The socket's file number is read at once: it is closed by the time a scheduled call runs.
        client.on_socket_open = lambda c, _, sock: self._call(self._watch, c, sock.fileno())
        client.on_socket_close = lambda _c, _, sock: self._call(self._unwatch, sock.fileno())
        client.on_socket_register_write = lambda c, _, sock: self._call(
            self._writable, c, sock.fileno()
        )
        client.on_socket_unregister_write = lambda _c, _, sock: self._call(
            self._not_writable, sock.fileno()
        )
        return client

    async def _keep_connected(self, client: paho.Client) -> None:
        """Connect, reconnect after a loss (backing off), and keep the connection alive."""
        delay = 1.0
        while True:
            if self._fd is None:
                try:  # connecting blocks (name lookup, TLS handshake): not on the event loop
                    await asyncio.to_thread(client.connect, self.broker.host, self.broker.port, 30)
                    delay = 1.0
                except OSError as exc:
                    where = f"{self.broker.host}:{self.broker.port}"
                    log.warning(
                        "MQTT: cannot reach %s (%s); trying again in %.0f s", where, exc, delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
            client.loop_misc()  # keep-alive pings, and noticing a silent broker
            await asyncio.sleep(1)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the event loop: now when already on it, else soon."""
        if threading.get_ident() == self._thread:
            callback(*args)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _watch(self, client: FastClient, fd: int) -> None:
        assert self._loop is not None
        self._fd = fd
        self._loop.add_reader(fd, self._readable, client)

    def _unwatch(self, fd: int) -> None:
        assert self._loop is not None
        self._writing = False
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        if self._fd == fd:
            self._fd = None

    def _writable(self, client: FastClient, fd: int) -> None:
        assert self._loop is not None
        if not self._writing:  # paho asks again for every packet it queues
            self._writing = True
            self._loop.add_writer(fd, self._write, client)

    def _write(self, client: FastClient) -> None:
        """Send paho's queue (a batch's PUBACKs) in few writes; stay registered while any is left."""
        sock = client.buffered_socket
        if sock is None:
            return
        try:
            with sock.corked():
                client.loop_write()
        except OSError as exc:  # paho notices the lost connection on its next read
            log.warning("MQTT: writing to the broker failed: %s", exc)
        if sock.unsent() and self._fd is not None:
            self._writable(client, self._fd)

    def _not_writable(self, fd: int) -> None:
        assert self._loop is not None
        self._writing = False
        self._loop.remove_writer(fd)

    def _readable(self, client: FastClient) -> None:
        """Handle what has arrived, the buffer's too (the selector sees only the kernel's), 500
        packets a turn: each round trip of a commit waits for a turn's end (2,000: a third slower)."""
        if client.read_buffered(500):
            assert self._loop is not None
            self._loop.call_soon(self._readable, client)

    def _on_connect(self, client: paho.Client, _: Any, flags: Any, code: Any, __: Any) -> None:
        if code.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.broker.host, code)
            return
        self._connection += 1
        client.subscribe([(self._share + route.subscription(), 1) for route in self.routes])
        log.info(
            "MQTT: connected to %s:%d as %s (session %s)",
            self.broker.host,
            self.broker.port,
            self.broker.client_id,
            "resumed" if flags.session_present else "new",
        )

    def _on_disconnect(self, _: paho.Client, __: Any, ___: Any, code: Any, ____: Any) -> None:
        log.warning("MQTT: disconnected from %s (%s)", self.broker.host, code)
        self.subscribed.clear()

    def _on_message(self, _: paho.Client, __: Any, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = repr(message._topic)
        payload = bytes(message.payload)  # already bytes: no copy
        self._inbox.append(Message(message.mid, message.qos, topic, payload, self._connection))
        self._wake.set()

    def _on_publish(self, _: paho.Client, __: Any, mid: int, ___: Any, ____: Any) -> None:
        self._published.add(mid)

    # --- the store side (the event loop) ------------------------------------------------------

    async def _take(self) -> list[Message]:
        while not self._inbox:
            self._wake.clear()
            await self._wake.wait()
        batch: list[Message] = []
        while self._inbox and len(batch) < self._batch_size:
            batch.append(self._inbox.popleft())
        return batch

    async def _handle(
        self, client: FastClient, batch: list[Message], previous: asyncio.Task[None] | None
    ) -> None:
        """Store a batch, then (once the previous batch is acknowledged: PUBACKs go in the
        order the messages came) publish its dead letters and acknowledge it."""
        # Each event has a place: (its message in the batch, its element in an array or -1).
        refused: Refusals = {}
        duplicates: set[Place] = set()
        elements: Elements = {}
        groups: dict[str | None, Lines] = {}
        events = 0
        for index, message in enumerate(batch):
            found = self._route(message.topic)
            if message.topic == self._dead_letter or found is None:
                refused[index, -1] = ("topic", f"no route takes topic {message.topic!r}")
                events += 1
                continue
            route, captured = found
            try:
                lines = event_lines(route, captured, message.payload)
            except Refused as refusal:
                refused[index, -1] = (refusal.field, refusal.reason)
                events += 1
                continue
            events += len(lines)
            group = groups.setdefault(route.key or self._key, [])
            for number, (element, line) in enumerate(lines):
                place = (index, -1 if element is None else number)
                if element is not None:
                    elements[place] = element
                if isinstance(line, Refused):
                    refused[place] = (line.field, line.reason)
                else:
                    group.append((place, line))
        for key, group in groups.items():
            # A gateway's arrays may hold many events a message: a transaction takes at most
            # ``batch_size`` events (and the intake's cap on a batch).
            for at in range(0, len(group), self._batch_size):
                await self._store(key, group[at : at + self._batch_size], refused, duplicates)
        committed = time.time()
        if previous is not None:
            await previous
        await self._dead_letters(client, batch, refused, elements)
        self._acknowledge(client, batch)
        for outcome, count in (
            ("refused", len(refused)),
            ("duplicate", len(duplicates)),
            ("stored", events - len(refused) - len(duplicates)),
        ):
            if count:
                self._counter.labels(outcome).inc(count)
        if self._on_commit is not None:
            self._on_commit(batch, committed)

    def _route(self, topic: str) -> tuple[Route, dict[str, str]] | None:
        """The route of a topic; a counter publishes to the same topic again and again."""
        if topic not in self._routed:
            if len(self._routed) >= _ROUTED_TOPICS:
                self._routed.clear()
            self._routed[topic] = find_route(self.routes, topic)
        return self._routed[topic]

    async def _store(
        self, key: str | None, lines: Lines, refused: Refusals, duplicates: set[Place]
    ) -> None:
        """Write one key's lines; note the refused and duplicate ones. Retries while the
        database is away; a batch that fails otherwise is written a message at a time."""
        attempt = 0
        while True:
            try:
                who = await self._principal(key)
                result = await self._intake.batch(b"\n".join([x for _, x in lines]), NDJSON, who)
                break
            except StoreUnavailable as exc:
                await self._pause(attempt, exc)
            except IocError as exc:  # the key: revoked, or not one that may send events
                for place, _ in lines:
                    refused[place] = (None, exc.message)
                return
            except (psycopg.OperationalError, PoolTimeout) as exc:
                await self._pause(attempt, exc)
            except Exception:
                if len(lines) == 1:
                    log.exception("MQTT: a message failed inside the platform")
                    refused[lines[0][0]] = (None, "the message failed inside the platform")
                    return
                log.exception("MQTT: a batch failed; writing its messages one at a time")
                for line in lines:
                    await self._store(key, [line], refused, duplicates)
                return
            attempt += 1
        for rejection in result.rejected:
            refused[lines[rejection.line - 1][0]] = (rejection.field, rejection.reason)
        duplicates.update(lines[number - 1][0] for number in result.duplicate_lines)

    async def _principal(self, key: str | None) -> Principal:
        if key is None:
            raise ConfigError(
                "IOC_MQTT_API_KEY is not set: MQTT events are checked with an API key "
                "(a source key, or an admin key) like any other"
            )
        who = await self._authorize(key)
        who.require(INGEST_ROLES)
        return who

    @staticmethod
    async def _pause(attempt: int, exc: Exception) -> None:
        delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
        stop_if_cancelled()  # a cancel the store's error stood in for ends the retries
        log.warning("MQTT: the store is unavailable (%s); retrying in %s s", exc, delay)
        await asyncio.sleep(delay)

    async def _dead_letters(
        self, client: paho.Client, batch: list[Message], refused: Refusals, elements: Elements
    ) -> None:
        """Publish each refused event with its reason (an array's element with its index), and
        wait until the broker has them."""
        waiting = set()
        for (index, number), (field, reason) in sorted(refused.items()):
            message = batch[index]
            if message.topic == self._dead_letter:
                continue  # never refuse a dead letter again (a route may cover its topic)
            payload = elements[index, number] if number >= 0 else message.payload
            letter = dead_letter(message.topic, field, reason, payload, number)
            info = client.publish(self._dead_letter, letter, qos=1)
            waiting.add(info.mid)
            log.info("MQTT: refused a message on %s: %s", message.topic, reason)
        while waiting:
            done = waiting & self._published
            self._published -= done
            waiting -= done
            if waiting:
                await asyncio.sleep(0.01)

    def _acknowledge(self, client: FastClient, batch: list[Message]) -> None:
        """Acknowledge the batch in the order it arrived; a message that came on an earlier
        connection is not: the broker sends it again and it is stored once (a duplicate)."""
        current = self._connection
        client.ack_all([m.mid for m in batch if m.qos == 1 and m.connection == current])
