"""Batched live feeds: array frames for clients that ask (``?batch=1``), one filtering per
distinct filter shared by its subscribers, ticket batch notices sent as single tickets, and the
slow-subscriber and replay-floor rules with subscribers that share a queue; the sockets of one
key re-checking it with one lookup."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from ioc.alerts.queries import AlertFeed
from ioc.alerts.records import CHANNEL as ALERTS
from ioc.errors import Unauthenticated
from ioc.events.readings import READINGS
from ioc.live import LiveHub, Subscription
from ioc.store import livelog
from ioc.store.keys import KeyVerifier, create_key, revoke_key
from ioc.tickets.opening import CHANNEL as TICKETS
from ioc.tickets.queue import TicketFeed
from tests.conftest import RunningServer, auth, make_key

# Notices as writers announce them: tickets (one agency's, another's, a departure, a batch of
# tickets), a batch of alerts, readings.
NOTICES: list[tuple[str, dict[str, Any]]] = [
    (TICKETS, {"ticket": 1, "agency": "ioc", "state": "new"}),
    (TICKETS, {"ticket": 2, "agency": "so-xd", "state": "new"}),
    (TICKETS, {"ticket": 1, "agency": "so-xd", "from_agency": "ioc", "state": "new"}),
    (
        TICKETS,
        {
            "tickets": [
                {"ticket": 3, "agency": "ioc", "state": "new", "reports": 1},
                {"ticket": 4, "agency": "so-xd", "state": "new", "reports": 2},
                {"ticket": 5, "agency": "ioc", "state": "new", "reports": 1},
            ]
        },
    ),
    (
        ALERTS,
        {
            "alerts": [
                {"alert": 7, "agency": "ioc", "status": "firing"},
                {"alert": 8, "agency": "so-xd", "escalated_to": "ioc", "status": "firing"},
                {"alert": 9, "agency": "so-xd", "status": "firing"},
            ]
        },
    ),
    (ALERTS, {"alert": 10, "agency": "so-xd", "status": "firing"}),
    (READINGS, {"readings": [{"sensor": "S-1", "value": 3}]}),
]
TICKET_BATCH = {
    "tickets": [
        {"ticket": 11, "agency": "ioc", "state": "new", "category": "moi_truong", "reports": 1},
        {"ticket": 12, "agency": "so-xd", "state": "new", "category": "xay_dung", "reports": 1},
    ]
}


def announce(db_url: str, notices: list[tuple[str, dict[str, Any]]]) -> None:
    """Each notice in a transaction of its own; a batch of tickets as the opening of tickets
    announces it, numbered ticket by ticket (migration 0028)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for channel, payload in notices:
            count = len(payload.get("tickets", [None]))
            conn.execute(
                "SELECT ioc_announce_items(%s, %s, %s)", (channel, json.dumps(payload), count)
            )


def expected(accept: Any, notices: list[tuple[str, dict[str, Any]]], first: int) -> list[Any]:
    """What a subscriber with ``accept`` receives of ``notices`` numbered from ``first``: each
    notice filtered on its own, a batch of tickets as its tickets, each numbered."""
    out: list[Any] = []
    seq = first - 1
    for _, payload in notices:
        seq += 1
        if "tickets" in payload:
            singles = [{"seq": seq + n, **item} for n, item in enumerate(payload["tickets"])]
            seq += len(singles) - 1
            out.extend(m for m in singles if accept(m))
            continue
        message = {"seq": seq, **payload}
        taken = livelog.filtered(message, json.dumps(message), accept)
        if taken is not None:
            out.append(taken[1])
    return out


async def take(subscription: Subscription, count: int) -> list[Any]:
    """The next ``count`` messages of a subscription, read a wake at a time."""
    messages: list[Any] = []
    batches = aiter(subscription.batches())
    while len(messages) < count:
        texts = await asyncio.wait_for(anext(batches), 10)
        messages.extend(json.loads(text) for text in texts)
    return messages


# --- the hub ------------------------------------------------------------------------------


def test_subscribers_with_equal_filters_share_a_queue_and_each_hears_what_its_filter_takes(
    db_url: str,
) -> None:
    filters: list[Any] = [
        TicketFeed(None),
        TicketFeed(None),
        TicketFeed("ioc"),
        TicketFeed("ioc"),
        TicketFeed("so-xd"),
        AlertFeed(None),
        AlertFeed("ioc"),
        AlertFeed("ioc"),
        lambda m: "readings" in m,
    ]

    async def scenario() -> tuple[int, list[list[Any]]]:
        hub = LiveHub(db_url)
        await hub.start()
        try:
            subscriptions = [hub.subscribe(accept) for accept in filters]
            shared = hub.filters
            announce(db_url, NOTICES)
            counts = [len(expected(accept, NOTICES, 1)) for accept in filters]
            heard = [await take(s, n) for s, n in zip(subscriptions, counts, strict=True)]
            return shared, heard
        finally:
            await hub.stop()

    shared, heard = asyncio.run(scenario())
    assert shared == 6  # nine subscribers, six distinct filters
    for accept, messages in zip(filters, heard, strict=True):
        assert messages == expected(accept, NOTICES, 1)
    # Spelled out for two of them: the operator hears the batch's tickets one by one, each
    # under its own number; an agency hears its own (and its departure notice).
    assert [(m["seq"], m["ticket"]) for m in heard[0]] == [(1, 1), (2, 2), (4, 3), (5, 4), (6, 5)]
    assert [(m["seq"], m["ticket"]) for m in heard[2]] == [(1, 1), (3, 1), (4, 3), (6, 5)]
    assert [[a["alert"] for a in m["alerts"]] for m in heard[6]] == [[7, 8]]


def test_a_subscriber_a_whole_queue_behind_is_dropped_while_one_sharing_its_filter_goes_on(
    db_url: str,
) -> None:
    async def scenario() -> dict[str, Any]:
        hub = LiveHub(db_url, channels=(TICKETS,), queue_size=3)
        await hub.start()
        try:
            fast, slow = hub.subscribe(TicketFeed(None)), hub.subscribe(TicketFeed(None))
            heard: list[Any] = []
            for n in range(1, 6):
                announce(db_url, [(TICKETS, {"ticket": n, "agency": "ioc"})])
                heard.extend(await take(fast, 1))  # the fast one keeps up; the slow never reads
            return {
                "fast": [m["ticket"] for m in heard],
                "slow": [texts async for texts in slow.batches()],  # ends at once: dropped
                "slow_dropped": slow.dropped,
                "fast_dropped": fast.dropped,
                "subscribers": hub.subscribers,
                "dropped_total": hub.dropped_total,
            }
        finally:
            await hub.stop()

    result = asyncio.run(scenario())
    assert result["fast"] == [1, 2, 3, 4, 5]
    assert result["slow_dropped"] is True and result["slow"] == []
    assert result["fast_dropped"] is False
    assert (result["subscribers"], result["dropped_total"]) == (1, 1)


def test_a_floor_skips_what_a_replay_sent_in_batches(db_url: str) -> None:
    async def scenario() -> list[Any]:
        hub = LiveHub(db_url, channels=(TICKETS,))
        await hub.start()
        try:
            subscription = hub.subscribe(TicketFeed(None))
            subscription.floor = 2  # as after a replay up to 2
            announce(db_url, [(TICKETS, {"ticket": n, "agency": "ioc"}) for n in (1, 2, 3)])
            return await take(subscription, 1)
        finally:
            await hub.stop()

    assert asyncio.run(scenario()) == [{"seq": 3, "ticket": 3, "agency": "ioc"}]


def test_a_replay_sends_a_batch_of_tickets_as_its_tickets(db_url: str) -> None:
    announce(db_url, [(TICKETS, TICKET_BATCH)])

    async def read(accept: Any) -> livelog.Replay:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            return await livelog.replay(conn, 0, accept)

    everyone = asyncio.run(read(TicketFeed(None)))
    assert [(seq, message["ticket"]) for seq, _, message in everyone.messages] == [
        (1, 11),
        (2, 12),
    ]
    assert all(json.loads(text) == message for _, text, message in everyone.messages)
    theirs = asyncio.run(read(TicketFeed("so-xd")))
    assert [m for _, _, m in theirs.messages] == [{"seq": 2, **TICKET_BATCH["tickets"][1]}]


# --- over websockets ----------------------------------------------------------------------


@pytest.fixture
def feeds(server: RunningServer) -> Iterator[Any]:
    """Open feed sockets (tickets unless told) with a key and a query; all closed at the end."""
    with contextlib.ExitStack() as sockets:

        def open_feed(key: str, query: str = "", path: str = "/v1/tickets/ws") -> ClientConnection:
            url = f"{server.ws_url}{path}{query}"
            return sockets.enter_context(connect(url, additional_headers=auth(key), open_timeout=5))

        yield open_feed


def frames(socket: ClientConnection, count: int) -> list[Any]:
    """Frames until ``count`` messages have come (an array frame counts its messages)."""
    got: list[Any] = []
    while sum(len(f) if isinstance(f, list) else 1 for f in got) < count:
        got.append(json.loads(socket.recv(timeout=10)))
    return got


def flat(got: list[Any]) -> list[Any]:
    return [m for f in got for m in (f if isinstance(f, list) else [f])]


def ready(server: RunningServer, subscribers: int) -> None:
    """Wait until the hub has this many subscribers (a socket subscribes as it opens)."""
    for _ in range(500):
        if server.platform.hub.subscribers >= subscribers:
            return
        server.run(asyncio.sleep(0.01))
    raise AssertionError("the sockets did not subscribe")


def test_opted_in_clients_get_array_frames_others_one_object_a_frame(
    server: RunningServer, feeds: Any
) -> None:
    operator = make_key(server, "operator")
    agency = make_key(server, "agency", agency="so-xd")
    batched, plain = feeds(operator, "?batch=1"), feeds(operator)
    theirs = feeds(agency, "?batch=1")
    ready(server, 3)
    announce(server.db_url, [(TICKETS, TICKET_BATCH), (TICKETS, {"ticket": 13, "agency": "ioc"})])

    arrays, objects = frames(batched, 3), frames(plain, 3)
    assert all(isinstance(f, list) and f for f in arrays)
    assert all(isinstance(f, dict) for f in objects)
    singles = [{"seq": n, **t} for n, t in enumerate(TICKET_BATCH["tickets"], start=1)]
    assert flat(arrays) == objects == [*singles, {"seq": 3, "ticket": 13, "agency": "ioc"}]
    assert flat(frames(theirs, 1)) == [singles[1]]

    # A replay comes in array frames too, then the live notices after it (none twice); one
    # from inside the batch sends the rest of it.
    again = feeds(operator, "?after=1&batch=1")
    replayed = frames(again, 2)
    assert all(isinstance(f, list) for f in replayed)
    assert flat(replayed) == [singles[1], {"seq": 3, "ticket": 13, "agency": "ioc"}]
    announce(server.db_url, [(TICKETS, {"ticket": 14, "agency": "ioc"})])
    assert flat(frames(again, 1)) == [{"seq": 4, "ticket": 14, "agency": "ioc"}]
    # And a plain client's replay one object a frame, as before.
    old = feeds(operator, "?after=0")
    assert [m["ticket"] for m in frames(old, 4)] == [11, 12, 13, 14]


def test_the_walls_feed_sends_array_frames_when_asked(server: RunningServer, feeds: Any) -> None:
    operator = make_key(server, "operator")
    batched = feeds(operator, "?batch=1", "/v1/wall/ws")
    plain = feeds(operator, "", "/v1/wall/ws")
    ready(server, 2)
    reading = {"sensor": "S-1", "value": 3}
    announce(server.db_url, [(READINGS, {"readings": [reading]})])
    expected_frame = {"type": "readings", "readings": [reading], "seq": 1}
    assert json.loads(batched.recv(timeout=10)) == [expected_frame]
    assert json.loads(plain.recv(timeout=10)) == expected_frame


def test_a_bad_batch_parameter_is_refused_with_a_reason(server: RunningServer, feeds: Any) -> None:
    socket = feeds(make_key(server, "operator"), "?batch=yes")
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "batch" in closed.value.rcvd.reason


# --- the sockets of one key re-checking it together -----------------------------------------


def test_overlapping_checks_of_a_key_share_one_lookup(db_url: str) -> None:
    async def scenario() -> tuple[list[Any], int, list[Any], int]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            key, _ = await create_key(conn, "operator", None, None, "500 sockets")
            token = key.token
            opened = 0

            @contextlib.asynccontextmanager
            async def connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
                nonlocal opened
                opened += 1
                yield conn

            verifier = KeyVerifier(cache_s=5.0)
            # As the open sockets of one key re-check it on the same beat (max_age 0: the
            # cache is not enough, each asks the database).
            who = await asyncio.gather(
                *(verifier.verify(connection, token, max_age=0) for _ in range(50))
            )
            first = opened
            await revoke_key(conn, key.prefix)
            refused = await asyncio.gather(
                *(verifier.verify(connection, token, max_age=0) for _ in range(50)),
                return_exceptions=True,
            )
            return who, first, refused, opened - first

    who, first, refused, second = asyncio.run(scenario())
    assert first == 1 and len({w.key_id for w in who}) == 1 and who[0].role.value == "operator"
    assert second == 1 and all(isinstance(r, Unauthenticated) for r in refused)
