"""Signed webhook delivery from the outbox, against a real database and real receiving servers.

Each receiver is a real HTTP server on a real port in a thread; the test decides what it
answers. Time between retries is jumped with a ManualClock; nothing sleeps for backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from alerting.webhooks import USER_AGENT, WebhookDispatcher, shown_url, sign, verify_signature
from ioc.alerts import outbox
from ioc.clock import ManualClock
from ioc.routing.rules import AgencyConfig, ResponsibilityConfig, apply_config
from ioc.settings import Settings
from ioc.store.database import make_pool
from tests.conftest import RunningServer, auth, free_port, make_key

START = datetime(2025, 8, 1, 8, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
SECRET = "bí-mật-của-sở-xây-dựng-2025"
OTHER_SECRET = "secret-of-the-water-company"
LATER = datetime.now(UTC) + timedelta(days=365)


# --- a real receiving endpoint ---------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server that records every POST and answers as the test says."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)  # path → answers, in order
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # path → extra headers
    hanging: set[str] = field(default_factory=set)  # paths that answer only after release
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def answer(self, path: str) -> int:
        queued = self.statuses.get(path)
        return queued.pop(0) if queued else 200

    def record(self, request: Received) -> None:
        with self.arrived:
            self.requests.append(request)
            self.arrived.notify_all()

    def wait_for(self, path: str, timeout: float = 10.0) -> Received:
        """The first request that reached ``path`` (waits for it to arrive)."""
        with self.arrived:
            self.arrived.wait_for(lambda: any(r.path == path for r in self.requests), timeout)
        return self.at(path)[0]

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.record(Received(self.path, headers, body))
            if self.path in state.hanging:
                state.release.wait(60)
            status = state.answer(self.path)
            text = b"" if status < 300 else f"lỗi {status} tại máy nhận".encode()
            self.send_response(status)
            for name, value in state.headers.get(self.path, {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that gave up on a hanging answer is expected here

    server = Server(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


# --- helpers -----------------------------------------------------------------------------------


def tuned(settings: Settings, **changes: Any) -> Settings:
    values = {
        "webhook_timeout_s": 30.0,
        "webhook_max_attempts": 5,
        "webhook_backoff_s": 30.0,
        "webhook_backoff_max_s": 3600.0,
        **changes,
    }
    return settings.model_copy(update=values)


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[AsyncConnectionPool[Any]]:
    assert settings.database_url
    pool = make_pool(settings.database_url, settings)
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


def agency(code: str, url: str | None, secret: str | None = SECRET) -> AgencyConfig:
    return AgencyConfig(
        code=code, name_vi=f"Cơ quan {code}", webhook_url=url, webhook_secret=secret
    )


async def set_agencies(pool: AsyncConnectionPool[Any], *agencies: AgencyConfig) -> None:
    async with pool.connection() as conn:
        await apply_config(conn, ResponsibilityConfig(agencies=list(agencies)))


def payload(n: int) -> dict[str, Any]:
    return {
        "alert": n,
        "level": "overdue",
        "title": f"Phản ánh số {n} quá hạn xử lý",
        "raised_at": START.isoformat(),
    }


async def put(pool: AsyncConnectionPool[Any], code: str, n: int, now: datetime = START) -> int:
    async with pool.connection() as conn:
        made = await outbox.enqueue(conn, code, "alert", f"alert:{n}:overdue", payload(n), now)
    assert made is not None
    return made


def row(db_url: str, delivery: int) -> dict[str, Any]:
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        found = cur.execute("SELECT * FROM outbox WHERE id = %s", (delivery,)).fetchone()
    assert found is not None
    return found


def attempts_of(db_url: str, delivery: int) -> list[dict[str, Any]]:
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT * FROM outbox_attempts WHERE outbox_id = %s ORDER BY id", (delivery,)
        ).fetchall()


def dispatcher(
    pool: AsyncConnectionPool[Any], clock: ManualClock, settings: Settings, **options: Any
) -> WebhookDispatcher:
    options.setdefault("spread", lambda: 0.5)  # a fixed jitter: delays can be checked exactly
    return WebhookDispatcher(pool, clock, settings, **options)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- signing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "stamp", "body", "now", "expected"),
    [
        (SECRET, 1754010000, b'{"a": 1}', 1754010000, True),
        (SECRET, 1754010000, b'{"a": 1}', 1754010300, True),  # at the edge of the tolerance
        (SECRET, 1754010000, b'{"a": 1}', 1754010301, False),  # too old: a replay
        (SECRET, 1754010000, b'{"a": 1}', 1754009699, False),  # too far in the future
        (OTHER_SECRET, 1754010000, b'{"a": 1}', 1754010000, False),  # another agency's secret
        (SECRET, 1754010000, b'{"a": 2}', 1754010000, False),  # the body was changed
        (SECRET, 1754010001, b'{"a": 1}', 1754010000, False),  # the timestamp was changed
    ],
)
def test_verify_signature(secret: str, stamp: int, body: bytes, now: int, expected: bool) -> None:
    header = sign(SECRET, 1754010000, b'{"a": 1}')
    assert verify_signature(secret, str(stamp), body, header, now) is expected


def test_verify_signature_accepts_any_of_several_and_refuses_garbage() -> None:
    good = sign(SECRET, 1754010000, b"{}")
    assert verify_signature(SECRET, 1754010000, b"{}", f"v1=00ff, {good}", 1754010000)
    assert not verify_signature(SECRET, "yesterday", b"{}", good, 1754010000)
    assert not verify_signature(SECRET, 1754010000, b"{}", "", 1754010000)
    assert good.startswith("v1=") and len(good) == 3 + 64


def test_delivery_is_signed_with_the_agency_secret_and_timestamp(
    settings: Settings, receiver: Receiver
) -> None:
    async def scenario() -> int:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", receiver.url + "/so-xd"))
            delivery = await put(pool, "so-xd", 1)
            assert await dispatcher(pool, ManualClock(START), tuned(settings)).tick() == 1
            return delivery

    delivery = run(scenario())
    got = receiver.wait_for("/so-xd")
    headers = got.headers
    assert json.loads(got.body) == payload(1)
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == "alert:1:overdue"
    assert headers["x-ioc-delivery"] == str(delivery)
    assert headers["x-ioc-attempt"] == "1"
    assert headers["user-agent"] == USER_AGENT
    stamp, signature = headers["x-ioc-timestamp"], headers["x-ioc-signature"]
    assert int(stamp) == int(START.timestamp())
    assert verify_signature(SECRET, stamp, got.body, signature, START)
    assert not verify_signature(OTHER_SECRET, stamp, got.body, signature, START)
    assert not verify_signature(SECRET, stamp, got.body, signature, START + timedelta(minutes=6))
    assert not verify_signature(SECRET, stamp, got.body + b" ", signature, START)
    stored = row(settings.database_url or "", delivery)
    assert stored["state"] == "delivered" and stored["attempts"] == 1
    assert stored["delivered_at"] == START and stored["lease_until"] is None
    [attempt] = attempts_of(settings.database_url or "", delivery)
    assert attempt["status"] == 200 and attempt["error"] is None
    assert attempt["url"] == receiver.url + "/so-xd"


# --- retries -----------------------------------------------------------------------------------


def test_a_500_is_retried_with_the_same_idempotency_key(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.statuses["/so-xd"] = [500]
    clock = ManualClock(START)

    async def scenario() -> tuple[int, list[int]]:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", receiver.url + "/so-xd"))
            delivery = await put(pool, "so-xd", 1)
            sender = dispatcher(pool, clock, tuned(settings))
            counts = [await sender.tick()]
            counts.append(await sender.tick())  # not due yet: nothing is sent
            clock.advance(31.5)
            counts.append(await sender.tick())
            return delivery, counts

    delivery, counts = run(scenario())
    assert counts == [1, 0, 1]
    first, second = receiver.at("/so-xd")
    assert (
        first.headers["idempotency-key"] == second.headers["idempotency-key"] == "alert:1:overdue"
    )
    assert first.headers["x-ioc-delivery"] == second.headers["x-ioc-delivery"] == str(delivery)
    assert (first.headers["x-ioc-attempt"], second.headers["x-ioc-attempt"]) == ("1", "2")
    assert first.body == second.body
    assert verify_signature(
        SECRET,
        second.headers["x-ioc-timestamp"],
        second.body,
        second.headers["x-ioc-signature"],
        clock.now(),
    )
    stored = row(settings.database_url or "", delivery)
    assert stored["state"] == "delivered" and stored["attempts"] == 2
    log = attempts_of(settings.database_url or "", delivery)
    assert [a["status"] for a in log] == [500, 200]
    assert "HTTP 500" in log[0]["error"] and "lỗi 500 tại máy nhận" in log[0]["error"]


def test_backoff_doubles_up_to_the_cap_then_the_message_is_dead(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.statuses["/so-xd"] = [500, 503, 502, 500]
    clock = ManualClock(START)
    limits = tuned(
        settings, webhook_max_attempts=4, webhook_backoff_s=30.0, webhook_backoff_max_s=100.0
    )

    async def scenario() -> tuple[int, list[float]]:
        gaps = []
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", receiver.url + "/so-xd"))
            delivery = await put(pool, "so-xd", 1)
            sender = dispatcher(pool, clock, limits)
            for _ in range(3):
                assert await sender.tick() == 1
                due = row(settings.database_url or "", delivery)["next_attempt_at"]
                gaps.append((due - clock.now()).total_seconds())
                clock.advance(gaps[-1] - 1)
                assert await sender.tick() == 0  # a second early: still waiting
                clock.advance(1)
            assert await sender.tick() == 1
            clock.advance(365 * 86400)
            assert await sender.tick() == 0  # dead: never sent again
            return delivery, gaps

    delivery, gaps = run(scenario())
    # 30, 60, then 120 capped at 100; each stretched by the fixed jitter (0.5 × 10 %).
    assert gaps == pytest.approx([31.5, 63.0, 105.0])
    stored = row(settings.database_url or "", delivery)
    assert stored["state"] == "dead" and stored["attempts"] == 4
    assert stored["last_error"].startswith("HTTP 500")
    assert len(receiver.at("/so-xd")) == 4
    assert len({r.headers["idempotency-key"] for r in receiver.requests}) == 1


def test_backoff_formula() -> None:
    assert [outbox.backoff(n, 30, 3600) for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]
    assert outbox.backoff(1, 30, 3600, spread=0.999) < 30 * 1.1
    assert outbox.backoff(10_000, 30, 3600) == 3600


def test_retry_after_is_honoured(settings: Settings, receiver: Receiver) -> None:
    receiver.statuses["/so-xd"] = [429]
    receiver.headers["/so-xd"] = {"Retry-After": "600"}

    async def scenario() -> int:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", receiver.url + "/so-xd"))
            delivery = await put(pool, "so-xd", 1)
            await dispatcher(pool, ManualClock(START), tuned(settings)).tick()
            return delivery

    stored = row(settings.database_url or "", run(scenario()))
    assert stored["state"] == "pending"
    assert stored["next_attempt_at"] == START + timedelta(seconds=600)


@pytest.mark.parametrize(
    ("url_path", "secret", "status", "reason"),
    [
        ("/gone", SECRET, 410, "HTTP 410 Gone: lỗi 410 tại máy nhận (the endpoint is gone"),
        ("/unsigned", None, None, "refused to send unsigned: agency 'so-xd' has a webhook_url"),
        (None, SECRET, None, "agency 'so-xd' has no webhook_url any more"),
    ],
)
def test_dead_at_once(
    settings: Settings,
    receiver: Receiver,
    url_path: str | None,
    secret: str | None,
    status: int | None,
    reason: str,
) -> None:
    receiver.statuses["/gone"] = [410]

    async def scenario() -> int:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", receiver.url + "/ok", secret))
            delivery = await put(pool, "so-xd", 1)
            # The endpoint as it is at delivery time counts, not as it was at enqueue time.
            url = None if url_path is None else receiver.url + url_path
            await set_agencies(pool, agency("so-xd", url, secret))
            await dispatcher(pool, ManualClock(START), tuned(settings)).tick()
            return delivery

    delivery = run(scenario())
    stored = row(settings.database_url or "", delivery)
    assert stored["state"] == "dead" and stored["attempts"] == 1
    assert reason in stored["last_error"]
    [attempt] = attempts_of(settings.database_url or "", delivery)
    assert attempt["status"] == status
    assert len(receiver.requests) == (1 if status else 0)  # never sent unsigned


def test_a_redirect_is_not_followed(settings: Settings, receiver: Receiver) -> None:
    receiver.statuses["/moved"] = [301]
    receiver.headers["/moved"] = {"Location": receiver.url + "/elsewhere"}

    async def scenario() -> int:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", receiver.url + "/moved"))
            delivery = await put(pool, "so-xd", 1)
            await dispatcher(pool, ManualClock(START), tuned(settings)).tick()
            return delivery

    stored = row(settings.database_url or "", run(scenario()))
    assert stored["state"] == "pending"
    assert stored["last_error"].startswith(
        f"HTTP 301 Moved Permanently to {receiver.url}/elsewhere"
    )
    assert [r.path for r in receiver.requests] == ["/moved"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.so-xd.hue.gov.vn/ioc", "https://hooks.so-xd.hue.gov.vn/ioc"),
        ("https://ioc:matkhau@hooks.example.vn/in", "https://ioc:***@hooks.example.vn/in"),
        ("https://hooks.example.vn/in?token=abc", "https://hooks.example.vn/in?redacted"),
    ],
)
def test_the_log_hides_credentials_in_urls(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_a_corrected_url_is_used_on_the_next_retry(settings: Settings, receiver: Receiver) -> None:
    dead_end = f"http://127.0.0.1:{free_port()}/nobody-listens"
    clock = ManualClock(START)

    async def scenario() -> int:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", dead_end))
            delivery = await put(pool, "so-xd", 1)
            sender = dispatcher(pool, clock, tuned(settings))
            await sender.tick()
            await set_agencies(pool, agency("so-xd", receiver.url + "/fixed"))
            clock.advance(3600)
            await sender.tick()
            return delivery

    delivery = run(scenario())
    assert len(receiver.at("/fixed")) == 1
    assert row(settings.database_url or "", delivery)["state"] == "delivered"
    failed, done = attempts_of(settings.database_url or "", delivery)
    assert failed["status"] is None and "could not connect" in failed["error"]
    assert failed["url"] == dead_end and done["url"] == receiver.url + "/fixed"


# --- one endpoint's trouble is its own ----------------------------------------------------------


def test_a_hanging_endpoint_does_not_hold_up_the_others(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.hanging.add("/hang")
    dead_end = f"http://127.0.0.1:{free_port()}/down"
    db = settings.database_url or ""

    async def scenario() -> tuple[int, int, int, list[str]]:
        async with opened(settings) as pool:
            await set_agencies(
                pool,
                agency("hang", receiver.url + "/hang"),
                agency("down", dead_end),
                agency("ok", receiver.url + "/ok"),
            )
            hang, down, ok = (
                await put(pool, "hang", 1),
                await put(pool, "down", 2),
                await put(pool, "ok", 3),
            )
            tick = asyncio.create_task(dispatcher(pool, ManualClock(START), tuned(settings)).tick())
            await asyncio.to_thread(receiver.wait_for, "/hang")
            await asyncio.to_thread(receiver.wait_for, "/ok")
            # While /hang still holds its request, the others are already settled.
            for _ in range(1000):
                if row(db, ok)["state"] == "delivered" and row(db, down)["last_error"]:
                    break
                await asyncio.sleep(0.01)
            states = [row(db, ok)["state"], row(db, down)["state"], row(db, hang)["state"]]
            assert not tick.done()
            receiver.release.set()
            assert await tick == 3
            return hang, down, ok, states

    hang, down, _, states = run(scenario())
    assert states == ["delivered", "pending", "pending"]
    assert row(db, hang)["state"] == "delivered"  # answered once released
    assert "could not connect" in row(db, down)["last_error"]


def test_an_endpoint_that_hangs_past_the_timeout_is_retried_later(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.hanging.add("/hang")

    async def scenario() -> tuple[int, int]:
        async with opened(settings) as pool:
            await set_agencies(
                pool, agency("hang", receiver.url + "/hang"), agency("ok", receiver.url + "/ok")
            )
            hang, ok = await put(pool, "hang", 1), await put(pool, "ok", 2)
            # Long enough for the endpoint that answers to do so in time on a busy machine.
            sender = dispatcher(pool, ManualClock(START), tuned(settings, webhook_timeout_s=2.0))
            assert await sender.tick() == 2
            return hang, ok

    hang, ok = run(scenario())
    db = settings.database_url or ""
    assert row(db, ok)["state"] == "delivered"
    stuck = row(db, hang)
    assert stuck["state"] == "pending" and stuck["last_error"] == "no answer within 2 s"
    assert stuck["next_attempt_at"] == START + timedelta(seconds=31.5)
    [attempt] = attempts_of(db, hang)
    assert attempt["status"] is None


# --- the outbox itself -------------------------------------------------------------------------


def test_enqueue_is_idempotent_on_the_key(settings: Settings) -> None:
    async def scenario() -> list[int | None]:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", "http://127.0.0.1:9/"))
            async with pool.connection() as conn:
                return [
                    await outbox.enqueue(conn, "so-xd", "alert", "k-1", payload(1), START),
                    await outbox.enqueue(conn, "so-xd", "alert", "k-1", payload(2), START),
                    await outbox.enqueue(conn, "so-xd", "digest", "k-2", payload(3), START),
                ]

    first, again, other = run(scenario())
    assert first is not None and again is None and other is not None and other != first
    with psycopg.connect(settings.database_url or "") as conn:
        rows = conn.execute("SELECT idempotency_key, payload FROM outbox ORDER BY id").fetchall()
    assert rows == [("k-1", payload(1)), ("k-2", payload(3))]


def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(settings: Settings) -> None:
    async def scenario() -> None:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", "http://127.0.0.1:9/"))
            async with pool.connection() as conn:
                with contextlib.suppress(RuntimeError):
                    async with conn.transaction():
                        assert await outbox.enqueue(conn, "so-xd", "alert", "k", payload(1), START)
                        raise RuntimeError("the alert's transaction failed")

    run(scenario())
    with psycopg.connect(settings.database_url or "") as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


def test_enqueue_refuses_an_unknown_kind(settings: Settings) -> None:
    async def scenario() -> None:
        async with opened(settings) as pool, pool.connection() as conn:
            await outbox.enqueue(conn, "ioc", "sms", "k", {}, START)

    with pytest.raises(ValueError, match="'sms' is not one of alert, digest"):
        run(scenario())


def test_two_dispatchers_deliver_each_message_once(settings: Settings, receiver: Receiver) -> None:
    codes = ["so-xd", "so-gtvt", "hepco", "capnuoc"]
    clock = ManualClock(START)

    async def scenario() -> int:
        async with opened(settings) as one, opened(settings) as two:
            await set_agencies(one, *(agency(c, f"{receiver.url}/{c}") for c in codes))
            for n in range(40):
                await put(one, codes[n % len(codes)], n)
            first = dispatcher(one, clock, tuned(settings), batch=3, per_agency=2)
            second = dispatcher(two, clock, tuned(settings), batch=3, per_agency=2)
            total = 0
            while True:
                counts = await asyncio.gather(first.tick(), second.tick(), first.tick())
                total += sum(counts)
                if not any(counts):
                    return total

    assert run(scenario()) == 40
    keys = [r.headers["idempotency-key"] for r in receiver.requests]
    assert len(keys) == len(set(keys)) == 40
    with psycopg.connect(settings.database_url or "") as conn:
        assert conn.execute(
            "SELECT state, sum(attempts) FROM outbox GROUP BY state"
        ).fetchall() == [("delivered", 40)]


def test_an_expired_lease_is_delivered_again(settings: Settings, receiver: Receiver) -> None:
    clock = ManualClock(START)

    async def scenario() -> tuple[int, list[int]]:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", receiver.url + "/so-xd"))
            delivery = await put(pool, "so-xd", 1)
            sender = dispatcher(pool, clock, tuned(settings))
            # A dispatcher claims the message and dies before sending or settling it.
            async with pool.connection() as conn:
                [_taken] = await outbox.claim(conn, clock.now(), sender.lease_s, 10, 10)
            counts = [await sender.tick()]  # still leased: left alone
            clock.advance(sender.lease_s - 1)
            counts.append(await sender.tick())
            clock.advance(1)
            counts.append(await sender.tick())
            return delivery, counts

    delivery, counts = run(scenario())
    assert counts == [0, 0, 1]
    [got] = receiver.at("/so-xd")
    assert got.headers["x-ioc-attempt"] == "2"
    stored = row(settings.database_url or "", delivery)
    assert stored["state"] == "delivered" and stored["attempts"] == 2


def test_a_late_failure_does_not_undo_a_takeover(settings: Settings) -> None:
    clock = ManualClock(START)

    async def scenario() -> tuple[bool, bool]:
        async with opened(settings) as pool, pool.connection() as conn:
            await set_agencies(pool, agency("so-xd", "http://127.0.0.1:9/"))
            await put(pool, "so-xd", 1)
            [stale] = await outbox.claim(conn, clock.now(), 60, 10, 10)
            clock.advance(61)
            [fresh] = await outbox.claim(conn, clock.now(), 60, 10, 10)
            failed = outbox.Attempt(clock.now(), "http://127.0.0.1:9/", 500, "HTTP 500", 5.0)
            late = await outbox.settle(conn, stale, failed, "retry", clock.now())
            ok = outbox.Attempt(clock.now(), "http://127.0.0.1:9/", 200, None, 5.0)
            current = await outbox.settle(conn, fresh, ok, "delivered", None)
            return late, current

    assert run(scenario()) == (False, True)
    with psycopg.connect(settings.database_url or "") as conn:
        assert conn.execute("SELECT state, attempts FROM outbox").fetchone() == ("delivered", 2)
        assert conn.execute("SELECT count(*) FROM outbox_attempts").fetchone() == (2,)


def test_run_survives_a_database_outage(settings: Settings, receiver: Receiver) -> None:
    """The loop logs a failed tick and carries on; it stops only when cancelled."""
    clock = ManualClock(START)

    async def scenario() -> None:
        async with opened(settings) as pool:
            await set_agencies(pool, agency("so-xd", receiver.url + "/so-xd"))
            await put(pool, "so-xd", 1)
            async with pool.connection() as conn:
                await conn.execute("ALTER TABLE outbox RENAME TO outbox_away")
            task = asyncio.create_task(dispatcher(pool, clock, tuned(settings)).run())
            for _ in range(1000):
                if clock.now() > START + timedelta(seconds=10):  # a few failed ticks
                    break
                await asyncio.sleep(0.01)
            assert not task.done()
            async with pool.connection() as conn:
                await conn.execute("ALTER TABLE outbox_away RENAME TO outbox")
            await asyncio.to_thread(receiver.wait_for, "/so-xd")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    run(scenario())
    assert len(receiver.at("/so-xd")) == 1


# --- the delivery log API ----------------------------------------------------------------------


@dataclass
class Log:
    server: RunningServer
    client: httpx.Client
    keys: dict[str, str]
    ids: dict[str, list[int]]  # agency → delivery ids, oldest first

    def get(self, who: str, path: str = "", **params: Any) -> httpx.Response:
        headers = auth(self.keys[who]) if who in self.keys else {}
        return self.client.get("/v1/deliveries" + path, params=params, headers=headers)

    def retry(self, who: str, delivery: int) -> httpx.Response:
        return self.client.post(f"/v1/deliveries/{delivery}/retry", headers=auth(self.keys[who]))


@pytest.fixture
def log(server: RunningServer, client: httpx.Client, receiver: Receiver) -> Log:
    keys = {role: make_key(server, role) for role in ("admin", "operator", "leader")}
    config = {
        "agencies": [
            {
                "code": c,
                "name_vi": n,
                "webhook_url": f"{receiver.url}/{c}",
                "webhook_secret": SECRET,
            }
            for c, n in (
                ("so-xd", "Sở Xây dựng"),
                ("hepco", "Công ty Môi trường và Công trình đô thị Huế"),
            )
        ]
    }
    answer = client.put("/v1/admin/config", json=config, headers=auth(keys["admin"]))
    assert answer.status_code == 200, answer.text
    keys["source"] = make_key(server, "source", source="hue-s")
    keys["so-xd"] = make_key(server, "agency", agency="so-xd")

    # Due only a year from now: a dispatcher the server may run leaves them to this test's.
    async def fill() -> dict[str, list[int]]:
        ids: dict[str, list[int]] = {"so-xd": [], "hepco": []}
        async with await psycopg.AsyncConnection.connect(server.db_url, autocommit=True) as conn:
            for n in range(7):
                code = "so-xd" if n % 2 == 0 else "hepco"
                made = await outbox.enqueue(conn, code, "alert", f"a-{n}", payload(n), LATER)
                assert made is not None
                ids[code].append(made)
        return ids

    return Log(server, client, keys, run(fill()))


def assert_error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"]
    return str(error["message"])


def listed(answer: httpx.Response) -> list[int]:
    assert answer.status_code == 200, answer.text
    return [d["id"] for d in answer.json()["deliveries"]]


@pytest.mark.parametrize("role", ["admin", "operator", "leader"])
def test_the_log_shows_every_agency_to_the_center(log: Log, role: str) -> None:
    everything = sorted(log.ids["so-xd"] + log.ids["hepco"], reverse=True)
    assert listed(log.get(role)) == everything  # newest first
    assert listed(log.get(role, agency="hepco")) == log.ids["hepco"][::-1]


def test_an_agency_sees_only_its_own_deliveries(log: Log) -> None:
    assert listed(log.get("so-xd")) == log.ids["so-xd"][::-1]
    assert listed(log.get("so-xd", agency="so-xd")) == log.ids["so-xd"][::-1]
    assert "'so-xd'" in assert_error(log.get("so-xd", agency="hepco"), 403, "forbidden")
    theirs = log.ids["hepco"][0]
    assert_error(log.get("so-xd", f"/{theirs}"), 404, "not_found")  # existence does not leak
    assert log.get("operator", f"/{theirs}").status_code == 200


@pytest.mark.parametrize(
    ("who", "status", "code"), [("source", 403, "forbidden"), ("nobody", 401, "unauthenticated")]
)
def test_the_log_needs_a_reading_role(log: Log, who: str, status: int, code: str) -> None:
    assert_error(log.get(who), status, code)
    assert_error(log.get(who, f"/{log.ids['so-xd'][0]}"), status, code)


def test_the_log_pages_with_a_cursor(log: Log) -> None:
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        answer = log.get("admin", **params)
        seen += listed(answer)
        token = answer.json()["next"]
        if token is None:
            break
        params["cursor"] = token
    assert seen == sorted(log.ids["so-xd"] + log.ids["hepco"], reverse=True)


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"state": "sent"}, "state", "accepted: pending, delivered, dead"),
        ({"cursor": "abc"}, "cursor", "not a cursor"),
        ({"limit": "0"}, "limit", "from 1 to 500"),
        ({"limit": "x"}, "limit", "from 1 to 500"),
        ({"kind": "alert"}, "kind", "unknown query parameter"),
    ],
)
def test_bad_log_queries_are_explained(
    log: Log, params: dict[str, str], field: str, words: str
) -> None:
    answer = log.get("admin", **params)
    message = assert_error(answer, 422, "invalid_input")
    assert words in message
    assert answer.json()["error"]["details"][0]["field"] == field


def test_a_missing_delivery_is_404(log: Log) -> None:
    assert_error(log.get("admin", "/999999"), 404, "not_found")
    assert_error(log.retry("admin", 999999), 404, "not_found")
    assert_error(log.get("admin", "/0"), 422, "invalid_input")


def test_a_delivery_shows_its_attempts_and_an_admin_can_retry_it(
    log: Log, receiver: Receiver, settings: Settings
) -> None:
    receiver.statuses["/so-xd"] = [500] * 4
    clock = ManualClock(LATER)
    one_try = tuned(settings, webhook_max_attempts=1)
    target = log.ids["so-xd"][0]

    async def tick() -> int:
        async with opened(settings) as pool:
            return await dispatcher(pool, clock, one_try).tick()

    assert run(tick()) == 7  # one attempt each; so-xd's fail and are dead at once
    assert listed(log.get("admin", state="dead")) == log.ids["so-xd"][::-1]
    assert listed(log.get("leader", state="delivered", agency="hepco")) == log.ids["hepco"][::-1]

    detail = log.get("so-xd", f"/{target}").json()
    assert detail["state"] == "dead" and detail["attempts"] == 1
    assert detail["payload"] == payload(0) and detail["idempotency_key"] == "a-0"
    [attempt] = detail["attempt_log"]
    assert attempt["status"] == 500 and attempt["url"] == f"{receiver.url}/so-xd"

    assert_error(log.retry("operator", target), 403, "forbidden")
    assert_error(log.retry("so-xd", target), 403, "forbidden")
    again = log.retry("admin", target)
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "pending" and again.json()["attempts"] == 0
    assert len(again.json()["attempt_log"]) == 1  # the history stays

    # Due now on the server's wall clock: delivered by this test's dispatcher (or the server's,
    # if it runs one); the receiver answers 200 now.
    for _ in range(100):
        run(tick())
        done = log.get("admin", f"/{target}").json()
        if done["state"] != "pending":
            break
    assert done["state"] == "delivered" and [a["status"] for a in done["attempt_log"]] == [500, 200]
    message = assert_error(log.retry("admin", target), 409, "conflict")
    assert "already delivered" in message
