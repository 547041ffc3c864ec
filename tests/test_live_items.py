"""Live notices of several items, each item numbered (migration 0028): a batch of tickets takes
a number per ticket, so a client resuming from any of them gets exactly the rest; the log finds
the notice of any item's number; the hub keeps track by the last item it heard; the opening of
many tickets at once goes out as a few notices under NOTIFY's limit."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

from ioc.live import LiveHub
from ioc.store import livelog
from ioc.tickets.opening import CHANNEL as TICKETS
from tests.conftest import RunningServer, auth, make_key
from tests.test_live_log import hub_role  # noqa: F401 (a fixture)

NDJSON = {"Content-Type": "application/x-ndjson"}
BATCH = {"tickets": [{"ticket": t, "agency": "ioc", "state": "new"} for t in (21, 22, 23)]}


def announce(conn: psycopg.Connection[Any], payload: dict[str, Any], items: int = 1) -> None:
    conn.execute("SELECT ioc_announce_items('ioc_test', %s, %s)", (json.dumps(payload), items))


def text_at(db_url: str, seq: int) -> str | None:
    async def read() -> str | None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            return await livelog.text_at(conn, seq)

    return asyncio.run(read())


def replayed(db_url: str, after: int) -> list[tuple[int, Any]]:
    async def read() -> livelog.Replay:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            return await livelog.replay(conn, after, lambda _: True)

    replay = asyncio.run(read())
    assert all(json.loads(text) == message for _, text, message in replay.messages)
    return [(seq, message) for seq, _, message in replay.messages]


def test_each_item_of_a_notice_has_a_number_of_its_own(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN ioc_test")
        with psycopg.connect(db_url) as conn:
            announce(conn, {"n": 1})
            announce(conn, BATCH, 3)
            with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
                announce(conn, BATCH, 3)  # rolled back with its savepoint: takes no numbers
                conn.execute("SELECT 1 / 0")
            conn.execute("SELECT ioc_announce('ioc_test', '{\"n\": 5}')")
            conn.commit()
        texts = [n.payload for n in listener.notifies(timeout=10, stop_after=3)]
    assert [json.loads(text) for text in texts] == [
        {"seq": 1, "n": 1},
        {"seq": 2, "items": 3, **BATCH},
        {"seq": 5, "n": 5},
    ]
    with psycopg.connect(db_url) as conn:
        ranges = conn.execute("SELECT first_seq, last_seq FROM live_commits").fetchall()
    assert ranges == [(1, 5)]

    # The log finds the notice of any item's number (the text as it was sent).
    assert [text_at(db_url, seq) for seq in range(1, 7)] == [
        texts[0],
        texts[1],
        texts[1],
        texts[1],
        texts[2],
        None,
    ]
    # A replay sends each ticket on its own, numbered; from inside the batch, the rest of it.
    tickets = [{"seq": n, **item} for n, item in enumerate(BATCH["tickets"], start=2)]
    assert replayed(db_url, 0) == [
        (1, {"seq": 1, "n": 1}),
        *[(t["seq"], t) for t in tickets],
        (5, {"seq": 5, "n": 5}),
    ]
    assert replayed(db_url, 3) == [(4, tickets[2]), (5, {"seq": 5, "n": 5})]
    assert replayed(db_url, 4) == [(5, {"seq": 5, "n": 5})]


def test_a_batch_without_a_count_keeps_one_number_for_its_tickets() -> None:
    # As a batch announced with ioc_announce (before migration 0028): one number, shared.
    shared = {"seq": 7, **BATCH}
    assert [seq for seq, _, _ in livelog.expand(shared, json.dumps(shared))] == [7, 7, 7]
    counted = {"seq": 7, "items": 3, **BATCH}
    expanded = livelog.expand(counted, json.dumps(counted), after=7)
    assert [(seq, message["ticket"]) for seq, message, _ in expanded] == [(8, 22), (9, 23)]
    assert all(json.loads(text) == message for _, message, text in expanded)


# --- the hub ------------------------------------------------------------------------------


def heard_after_reconnect(db_url: str, hub_url: str, role: str, away: list[str]) -> list[Any]:
    """What a subscriber hears: a batch of three tickets, then (the hub away, unable to log in)
    the statements ``away``, then a notice once the hub listens again."""

    async def scenario() -> list[Any]:
        hub = LiveHub(hub_url, channels=(TICKETS,), retry_max_s=0.2)
        await hub.start()
        try:
            messages = aiter(hub.subscribe(lambda _: True))

            async def next_message() -> Any:
                return json.loads(await asyncio.wait_for(anext(messages), 30))

            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                await conn.execute(
                    "SELECT ioc_announce_items(%s, %s, 3)", (TICKETS, json.dumps(BATCH))
                )
                heard = [await next_message() for _ in range(3)]
                assert hub.last_seq == 3  # the batch's last ticket
                old = hub.backend_pid
                await conn.execute(f"ALTER ROLE {role} NOLOGIN")
                await conn.execute("SELECT pg_terminate_backend(%s)", (old,))
                for statement in away:
                    await conn.execute(statement)
                await conn.execute(f"ALTER ROLE {role} LOGIN")
                await asyncio.wait_for(hub.wait_listening(other_than=old), 30)
                await conn.execute(
                    "SELECT ioc_announce(%s, %s)", (TICKETS, json.dumps({"ticket": 99}))
                )
                heard.append(await next_message())
                while heard[-1].get("ticket") != 99:
                    heard.append(await next_message())
                return heard
        finally:
            await hub.stop()

    return asyncio.run(scenario())


def test_the_hub_resumes_after_the_last_ticket_of_a_batch_it_heard(
    db_url: str,
    hub_role: tuple[str, str],  # noqa: F811 (the fixture imported above)
) -> None:
    missed = [f"SELECT ioc_announce('{TICKETS}', '{{\"ticket\": 24}}')"]
    heard = heard_after_reconnect(db_url, *hub_role, missed)
    assert heard == [
        *[{"seq": n, **t} for n, t in enumerate(BATCH["tickets"], start=1)],
        {"seq": 4, "ticket": 24},  # replayed from the log, no resync
        {"seq": 5, "ticket": 99},
    ]


def test_the_hub_resyncs_when_the_batch_it_heard_was_numbered_again(
    db_url: str,
    hub_role: tuple[str, str],  # noqa: F811 (the fixture imported above)
) -> None:
    # As after a failover that lost the batch: another batch took its numbers.
    other = json.dumps({"tickets": [{"ticket": t} for t in (31, 32, 33)]})
    reused = [
        "DELETE FROM live_log",
        "DELETE FROM live_commits",
        "SELECT setval('live_seq', 1, false)",
        f"SELECT ioc_announce_items('{TICKETS}', '{other}', 3)",
    ]
    heard = heard_after_reconnect(db_url, *hub_role, reused)
    assert [m.get("resync") for m in heard[3:-1]] == [True]
    assert heard[-1] == {"seq": 4, "ticket": 99}


# --- the opening of many tickets, over a real server ---------------------------------------


def reports(count: int) -> bytes:
    opened = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).replace(microsecond=0)
    lines = [
        {  # about a kilometre apart: each opens a ticket of its own
            "kind": "field_report",
            "external_id": f"B-{n}",
            "category": "moi_truong",
            "description": f"Phản ánh số {n}",
            "lon": round(107.40 + (n % 40) * 0.01, 6),
            "lat": round(16.30 + (n // 40) * 0.01, 6),
            "occurred_at": opened.isoformat(),
        }
        for n in range(count)
    ]
    return "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()


def messages(url: str, key: str, count: int) -> list[Any]:
    with connect(url, additional_headers=auth(key), open_timeout=5) as socket:
        got = [json.loads(socket.recv(timeout=10)) for _ in range(count)]
        with pytest.raises(TimeoutError):
            socket.recv(timeout=0.3)  # and nothing more
    return got


def test_many_new_tickets_go_out_as_a_few_notices_each_ticket_numbered(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    operator = make_key(server, "operator")
    with psycopg.connect(server.db_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {TICKETS}")
        answer = client.post(
            "/v1/events/batch", content=reports(150), headers=auth(source_key) | NDJSON
        )
        assert answer.status_code == 200 and answer.json()["accepted"] == 150, answer.text
        texts: list[str] = []
        for note in listener.notifies(timeout=10):
            texts.append(note.payload)
            if sum(livelog.items(json.loads(t)) for t in texts) >= 150:
                break
    # More tickets than one notice holds: a few notices, each under NOTIFY's limit, numbered
    # one after another item by item.
    notices = [json.loads(text) for text in texts]
    assert 1 < len(notices) < 10
    assert all(len(text.encode()) < 8000 for text in texts)
    assert [n["seq"] for n in notices] == [
        1 + sum(livelog.items(m) for m in notices[:k]) for k in range(len(notices))
    ]
    assert all(n["items"] == len(n["tickets"]) for n in notices)

    # A client gets each ticket on its own, with its own number, in the usual shape.
    everything = messages(f"{server.ws_url}/v1/tickets/ws?after=0", operator, 150)
    assert [m["seq"] for m in everything] == list(range(1, 151))
    with psycopg.connect(server.db_url) as conn:
        ids = sorted(int(r[0]) for r in conn.execute("SELECT id FROM tickets").fetchall())
    assert sorted(m["ticket"] for m in everything) == ids and len(ids) == 150
    shape = ["seq", "ticket", "agency", "state", "category", "reports"]
    assert all(list(m) == shape for m in everything)
    assert {(m["state"], m["category"], m["reports"]) for m in everything} == {
        ("new", "moi_truong", 1)
    }

    # One resuming from inside the first notice gets exactly the rest, each once.
    middle = len(notices[0]["tickets"]) // 2
    rest = messages(f"{server.ws_url}/v1/tickets/ws?after={middle}", operator, 150 - middle)
    assert rest == everything[middle:]


def test_the_notices_of_new_tickets_carry_the_databases_own_message_text(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    """New tickets' messages are written by the server, not read back: each must be the text
    the database gives the stored ticket (the shape every other ticket change is sent in),
    the count of reports taking in those of the same batch that joined it."""
    opened = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).replace(microsecond=0).isoformat()

    def line(external_id: str, lon: float, category: str = "moi_truong") -> dict[str, Any]:
        return {
            "kind": "field_report",
            "external_id": external_id,
            "category": category,
            "description": "Rác thải ở vỉa hè",
            "lon": lon,
            "lat": 16.46,
            "occurred_at": opened,
        }

    def post(lines: list[dict[str, Any]]) -> list[str]:
        with psycopg.connect(server.db_url, autocommit=True) as listener:
            listener.execute(f"LISTEN {TICKETS}")
            body = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines).encode()
            answer = client.post(
                "/v1/events/batch", content=body, headers=auth(source_key) | NDJSON
            )
            assert answer.status_code == 200 and answer.json()["accepted"] == len(lines)
            # The answer came after the commit: its notices are already on their way.
            notes = [n.payload for n in listener.notifies(timeout=1)]
        return notes

    def sent(notes: list[str]) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for note in notes:
            body = json.loads(note)
            for message in body.get("tickets", [body]):
                found[message["ticket"]] = {k: v for k, v in message.items() if k != "seq"}
        return found

    def stored(ids: list[int]) -> dict[int, dict[str, Any]]:
        with psycopg.connect(server.db_url) as conn:
            rows = conn.execute(
                "SELECT t.id, row_to_json((SELECT n FROM (SELECT t.id AS ticket, t.agency,"
                " t.state, t.category, t.report_count AS reports) AS n))::text"
                " FROM tickets t WHERE t.id = ANY(%s)",
                (ids,),
            ).fetchall()
        # Compared as text too: the members in the same order, the same spelling.
        return {int(i): json.loads(text) for i, text in rows} | {
            -int(i): {"text": text} for i, text in rows
        }

    # A batch: two tickets, the first joined by a report close by (a few metres east).
    first = sent(post([line("N-1", 107.58), line("N-2", 107.58003), line("N-3", 107.62)]))
    assert len(first) == 2
    db = stored(list(first))
    assert {t: first[t] for t in first} == {t: db[t] for t in first}
    assert sorted(m["reports"] for m in first.values()) == [1, 2]
    for ticket, message in first.items():
        assert json.dumps(message, separators=(",", ":"), ensure_ascii=False) == db[-ticket]["text"]
    # Another: a report joining a ticket already there (read back from the database) and a
    # ticket of its own (written by the server).
    second = sent(post([line("N-4", 107.58001), line("N-5", 107.66)]))
    assert len(second) == 2
    db = stored(list(second))
    assert {t: second[t] for t in second} == {t: db[t] for t in second}
    assert sorted(m["reports"] for m in second.values()) == [1, 3]
