"""The live log numbered once per transaction (migration 0021), batch alert notices, and the
hub replaying the log after losing its own connection."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from ioc.alerts.records import CHANNEL as ALERTS
from ioc.alerts.records import NewAlert, raise_alerts
from ioc.live import LiveHub
from ioc.store import livelog, migrate
from ioc.store.database import create_database, drop_database

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def announce(conn: psycopg.Connection[Any], channel: str, payload: dict[str, Any]) -> None:
    conn.execute("SELECT ioc_announce(%s, %s)", (channel, json.dumps(payload)))


def listen(db_url: str, channel: str = "ioc_test") -> psycopg.Connection[Any]:
    listener = psycopg.connect(db_url, autocommit=True)
    listener.execute(f"LISTEN {channel}")
    return listener


def heard(listener: psycopg.Connection[Any], count: int) -> list[dict[str, Any]]:
    return [json.loads(n.payload) for n in listener.notifies(timeout=10, stop_after=count)]


def replayed(db_url: str, after: int) -> livelog.Replay:
    async def read() -> livelog.Replay:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            return await livelog.replay(conn, after, lambda _: True)

    return asyncio.run(read())


def test_a_transactions_notices_are_numbered_together_in_commit_order(db_url: str) -> None:
    with listen(db_url) as listener:
        with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
            for n in range(3):
                announce(first, "ioc_test", {"n": f"first-{n}"})
            announce(second, "ioc_test", {"n": "second"})
            second.commit()  # commits first: numbered first
            announce(first, "ioc_test", {})  # an empty object gets its seq too
            first.commit()
        messages = heard(listener, 5)
    assert messages == [
        {"seq": 1, "n": "second"},
        {"seq": 2, "n": "first-0"},
        {"seq": 3, "n": "first-1"},
        {"seq": 4, "n": "first-2"},
        {"seq": 5},
    ]
    with psycopg.connect(db_url) as conn:
        ranges = conn.execute(
            "SELECT first_seq, last_seq FROM live_commits ORDER BY last_seq"
        ).fetchall()
    assert ranges == [(1, 1), (2, 5)]  # one range per transaction
    # A replay sends exactly the texts the listeners heard, from any cursor.
    replay = replayed(db_url, 2)
    assert [(seq, json.loads(text)) for seq, text, _ in replay.messages] == [
        (n, messages[n - 1]) for n in (3, 4, 5)
    ]
    assert (replay.upto, replay.resync) == (5, False)


def test_rolled_back_notices_leave_no_gap(db_url: str) -> None:
    with listen(db_url) as listener:
        with psycopg.connect(db_url) as conn:
            announce(conn, "ioc_test", {"n": 1})
            with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
                announce(conn, "ioc_test", {"n": "gone"})
                conn.execute("SELECT 1 / 0")
            announce(conn, "ioc_test", {"n": 2})
            conn.commit()
            # A savepoint rolled back with the transaction's first notice in it.
            with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
                announce(conn, "ioc_test", {"n": "gone too"})
                conn.execute("SELECT 1 / 0")
            announce(conn, "ioc_test", {"n": 3})
            conn.commit()
            announce(conn, "ioc_test", {"n": "rolled back"})
            conn.rollback()
            announce(conn, "ioc_test", {"n": 4})
            conn.commit()
        messages = heard(listener, 4)
    assert messages == [{"seq": s, "n": n} for s, n in ((1, 1), (2, 2), (3, 3), (4, 4))]
    assert [seq for seq, _, _ in replayed(db_url, 0).messages] == [1, 2, 3, 4]


def test_a_pruned_cursor_gets_a_resync(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for n in range(3):
            announce(conn, "ioc_test", {"n": n})
        conn.execute("UPDATE live_commits SET at = at - interval '2 hours' WHERE last_seq <= 2")

        async def prune() -> int:
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as a:
                return await livelog.prune(a)

        assert asyncio.run(prune()) == 2
        assert conn.execute("SELECT count(*) FROM live_log").fetchone() == (1,)
    assert replayed(db_url, 1).resync is True
    kept = replayed(db_url, 2)
    assert [seq for seq, _, _ in kept.messages] == [3] and kept.resync is False


def test_notices_logged_before_0021_keep_their_numbers(admin_url: str) -> None:
    name = f"ioc_test_legacy_{uuid.uuid4().hex[:8]}"
    url = create_database(admin_url, name)
    try:
        everything = migrate.available
        before = [m for m in everything("plain") if m.version < 21]
        with psycopg.connect(url, autocommit=True) as conn:
            for migration in before:  # the schema as a deployed database has it
                conn.execute(migration.sql.encode())
            with conn.transaction():
                for n in range(2):
                    announce(conn, "ioc_test", {"n": n})
            announce(conn, "ioc_test", {"n": 2})
            rest = [m for m in everything("plain") if m.version >= 21]
            for migration in rest:
                conn.execute(migration.sql.encode())
            announce(conn, "ioc_test", {"n": 3})
        replay = replayed(url, 0)
        assert [json.loads(text) for _, text, _ in replay.messages] == [
            {"seq": s, "n": s - 1} for s in (1, 2, 3, 4)
        ]
        assert replayed(url, 1).messages[0][0] == 2
    finally:
        drop_database(admin_url, name)


def alert(n: int, agency: str) -> NewAlert:
    return NewAlert(
        "sensor",
        f"S-{n:04d}",
        "silent",
        "warning",
        "warning",
        agency,
        f"Cảm biến S-{n:04d} im lặng",
    )


def test_many_alerts_go_out_in_a_few_batches_under_notifys_limit(db_url: str) -> None:
    alerts = [alert(n, "so-tnmt" if n % 3 else "csgt-tay") for n in range(300)]

    async def raise_all(conn: psycopg.AsyncConnection[Any]) -> list[int]:
        async with conn.transaction():
            return await raise_alerts(conn, alerts, NOW, 3600)

    async def scenario() -> tuple[list[int], list[str]]:
        async with (
            await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener,
            await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn,
        ):
            await listener.execute(f"LISTEN {ALERTS}")
            ids = await raise_all(conn)
            row = await (await conn.execute("SELECT count(*) FROM live_log")).fetchone()
            count = int(row[0]) if row else 0
            texts = [n.payload async for n in listener.notifies(timeout=10, stop_after=count)]
            return ids, texts

    ids, texts = asyncio.run(scenario())
    assert len(ids) == 300 and 1 < len(texts) < 300
    assert all(len(text.encode()) < 8000 for text in texts)
    batches = [json.loads(text) for text in texts]
    assert [b["seq"] for b in batches] == list(range(1, len(batches) + 1))
    items = [item for b in batches for item in b["alerts"]]
    assert sorted(item["alert"] for item in items) == sorted(ids)
    assert {item["subject_id"] for item in items} == {a.subject_id for a in alerts}

    # A subscriber whose filter takes some items of a batch gets those, under the same seq.
    def mine(message: Any) -> bool:
        return bool(message.get("agency") == "csgt-tay")

    parts = [livelog.filtered(b, t, mine) for b, t in zip(batches, texts, strict=True)]
    taken = [p for p in parts if p is not None]
    assert all(json.loads(text) == part for text, part in taken)
    assert all(part["seq"] in {b["seq"] for b in batches} for _, part in taken)
    assert sorted(i["subject_id"] for _, part in taken for i in part["alerts"]) == sorted(
        a.subject_id for a in alerts if a.agency == "csgt-tay"
    )


# --- the hub losing its own connection ------------------------------------------------------


@pytest.fixture
def hub_role(db_url: str) -> Iterator[tuple[str, str]]:
    """A login the hub connects with, which the test can refuse for a while; (url, role)."""
    role = f"hub_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'hub-secret'")
        conn.execute(f"GRANT SELECT ON live_log, live_commits, live_seq TO {role}")
    url = psycopg.conninfo.make_conninfo(db_url, user=role, password="hub-secret")
    yield url, role
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"REVOKE ALL ON live_log, live_commits, live_seq FROM {role}")
        conn.execute(f"DROP ROLE {role}")


def away_and_back(db_url: str, hub_url: str, role: str, away: list[str]) -> list[dict[str, Any]]:
    """What a subscriber hears: a notice, then (the hub away, unable to log in) the statements
    ``away``, then a notice once the hub listens again."""

    async def scenario() -> list[dict[str, Any]]:
        hub = LiveHub(hub_url, channels=("ioc_test",), retry_max_s=0.2)
        await hub.start()
        try:
            messages = aiter(hub.subscribe(lambda _: True))
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                await conn.execute("SELECT ioc_announce('ioc_test', '{\"n\": 1}')")
                first = [json.loads(await asyncio.wait_for(anext(messages), 30))]
                old = hub.backend_pid
                await conn.execute(f"ALTER ROLE {role} NOLOGIN")
                await conn.execute("SELECT pg_terminate_backend(%s)", (old,))
                for statement in away:  # the hub is away: no LISTEN anywhere hears these
                    await conn.execute(statement)
                await conn.execute(f"ALTER ROLE {role} LOGIN")
                await asyncio.wait_for(hub.wait_listening(other_than=old), 30)
                await conn.execute("SELECT ioc_announce('ioc_test', '{\"n\": 4}')")
                rest = [json.loads(await asyncio.wait_for(anext(messages), 30))]
                while rest[-1].get("n") != 4:
                    rest.append(json.loads(await asyncio.wait_for(anext(messages), 30)))
                return first + rest
        finally:
            await hub.stop()

    return asyncio.run(scenario())


MISSED = [f"SELECT ioc_announce('ioc_test', '{{\"n\": {n}}}')" for n in (2, 3)]


def test_the_hub_replays_what_it_missed_while_reconnecting(
    db_url: str, hub_role: tuple[str, str]
) -> None:
    messages = away_and_back(db_url, *hub_role, MISSED)
    assert messages == [{"seq": n, "n": n} for n in (1, 2, 3, 4)]  # each once, in order


def test_the_hub_resyncs_when_what_it_missed_is_gone(
    db_url: str, hub_role: tuple[str, str]
) -> None:
    pruned = [*MISSED, "DELETE FROM live_commits WHERE last_seq <= 2"]
    messages = away_and_back(db_url, *hub_role, pruned)
    assert messages[0] == {"seq": 1, "n": 1} and messages[-1] == {"seq": 4, "n": 4}
    assert [m.get("resync") for m in messages[1:-1]] == [True]


def test_the_hub_resyncs_when_the_log_ends_before_what_it_heard(
    db_url: str, hub_role: tuple[str, str]
) -> None:
    # As after a failover to a standby that had not received the last commits: the notice the
    # hub heard is gone and its number will be handed out again.
    lost = [
        "DELETE FROM live_log",
        "DELETE FROM live_commits",
        "SELECT setval('live_seq', 1, false)",
    ]
    messages = away_and_back(db_url, *hub_role, lost)
    assert messages == [{"seq": 1, "n": 1}, messages[1], {"seq": 1, "n": 4}]
    assert messages[1].get("resync") is True


def test_the_hub_resyncs_when_the_number_it_heard_was_handed_out_again(
    db_url: str, hub_role: tuple[str, str]
) -> None:
    # As after a failover to a standby that had not received the last commit, where a new
    # commit takes the lost number before the hub reads the log again: the log reaches the
    # number the hub heard, but holds another notice under it.
    reused = [
        "DELETE FROM live_log",
        "DELETE FROM live_commits",
        "SELECT setval('live_seq', 1, false)",
        "SELECT ioc_announce('ioc_test', '{\"n\": 9}')",
    ]
    messages = away_and_back(db_url, *hub_role, reused)
    assert messages == [{"seq": 1, "n": 1}, messages[1], {"seq": 2, "n": 4}]
    assert messages[1].get("resync") is True
