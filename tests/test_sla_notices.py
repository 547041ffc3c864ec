"""The SLA engine's cheaper catch-up (migration 0031): the notice of an alert it raises is the
very text the generic alert notice gives for that row; an alert still active is not raised
again; ioc_announce_each logs a list of notices numbered as one ioc_announce call each would;
ioc_live_text's output is unchanged."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from ioc.alerts.records import CHANNEL, NOTICE
from tests.conftest import RunningServer
from tests.test_sla import _many_due, engine_for, tick
from tests.test_sla import configured as configured  # a fixture


def _last_seq(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(last_seq), 0) FROM live_commits").fetchone()
    return int(row[0]) if row else 0


def _raised_batches(conn: psycopg.Connection[Any], after: int) -> list[str]:
    """The alert notices committed after number ``after`` whose items are all active."""
    rows = conn.execute(
        "SELECT l.payload FROM live_log l JOIN live_commits c ON c.xact = l.xact"
        " WHERE c.first_seq > %s AND l.channel = %s ORDER BY c.first_seq, l.ord",
        (after, CHANNEL),
    ).fetchall()
    return [
        str(r[0]) for r in rows if all(a["status"] == "active" for a in json.loads(r[0])["alerts"])
    ]


def _row_notice(conn: psycopg.Connection[Any], alert: int) -> str:
    row = conn.execute(f"SELECT {NOTICE} FROM alerts a WHERE a.id = %s", (alert,)).fetchone()
    assert row is not None
    return str(row[0])


def test_raised_alert_notices_are_the_row_notices(
    client: httpx.Client,
    server: RunningServer,
    configured: dict[str, str],
) -> None:
    due = _many_due(client, configured["source"], 3)  # twelve hours after opening: overdue
    engine = engine_for(server, sla_escalate_after_s=3600)
    levels = []
    # Due soon (8 h of the 10), overdue (past 10 h), then escalated to the parent agency (11 h).
    for now in (due - timedelta(hours=4), due - timedelta(hours=2, seconds=-1), due):
        with psycopg.connect(server.db_url, autocommit=True) as conn:
            conn.execute("SET TimeZone = 'Asia/Ho_Chi_Minh'")
            before = _last_seq(conn)
            assert tick(server, engine, now).raised == 3
            batches = _raised_batches(conn, before)
            assert batches
            for text in batches:
                items = json.loads(text)["alerts"]
                levels += [a["level"] for a in items]
                expected = ",".join(_row_notice(conn, a["alert"]) for a in items)
                assert text == '{"alerts":[' + expected + "]}"
    assert sorted(set(levels)) == ["due_soon", "escalated", "overdue"] and len(levels) == 9


def test_a_clock_due_again_raises_no_second_active_alert(
    client: httpx.Client,
    server: RunningServer,
    configured: dict[str, str],
) -> None:
    """An alert still active is not raised again (NOT EXISTS, the unique index behind it): the
    clock moves on as if it had been."""
    due = _many_due(client, configured["source"], 2)
    engine = engine_for(server)
    soon = due - timedelta(hours=4)
    assert tick(server, engine, soon).raised == 2
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute("UPDATE ticket_clocks SET sla_stage = 'due_soon', next_check_at = %s", (soon,))
    again = tick(server, engine, soon)
    assert (again.tickets, again.raised) == (2, 0)
    with psycopg.connect(server.db_url) as conn:
        rows = conn.execute(
            "SELECT level, count(*) FROM alerts WHERE resolved_at IS NULL GROUP BY level"
        ).fetchall()
        stages = conn.execute("SELECT DISTINCT sla_stage FROM ticket_clocks").fetchall()
    assert rows == [("due_soon", 2)] and stages == [("overdue",)]


def _logged(conn: psycopg.Connection[Any]) -> list[tuple[int, str, int]]:
    return [
        (int(o), str(p), int(i))
        for o, p, i in conn.execute(
            "SELECT ord, payload, items FROM live_log WHERE xact = txid_current() ORDER BY ord"
        ).fetchall()
    ]


def test_announce_each_numbers_as_one_call_each(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN ioc_test")
        with psycopg.connect(db_url) as conn:
            conn.execute("SELECT ioc_announce('ioc_test', '{\"n\": 1}')")
            conn.execute("SELECT ioc_announce_each('ioc_test', %s)", (['{"n": 2}', ' \n{"n": 3}'],))
            conn.execute("SELECT ioc_announce_each('ioc_test', %s::text[])", ([],))
            conn.execute("SELECT ioc_announce_items('ioc_test', '{\"n\": [4, 5]}', 2)")
            conn.execute("SELECT ioc_announce_each('ioc_test', %s)", (['{"n": 6}'],))
            assert _logged(conn) == [
                (1, '{"n": 1}', 1),
                (2, '{"n": 2}', 1),
                (3, '{"n": 3}', 1),  # trimmed, as ioc_announce trims
                (4, '{"n": [4, 5]}', 2),
                (6, '{"n": 6}', 1),
            ]
            conn.commit()
        heard = [json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=5)]
    first = heard[0]["seq"]
    assert [(m["seq"] - first, m["n"]) for m in heard] == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, [4, 5]),
        (5, 6),
    ]
    assert heard[3]["items"] == 2


def test_announce_each_logs_nothing_when_notices_are_off(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("SET ioc.live_notices = 'off'")
        conn.execute("SELECT ioc_announce_each('ioc_test', %s)", (['{"n": 1}'],))
        assert _logged(conn) == []
        conn.execute("SET ioc.live_notices = 'on'")
        conn.execute("SELECT ioc_announce_each('ioc_test', %s)", (['{"n": 1}'],))
        assert [o for o, _, _ in _logged(conn)] == [1]
        conn.rollback()


@pytest.mark.parametrize(
    ("payload", "items", "text"),
    [
        ('{"a":1}', 1, '{"seq":7,"a":1}'),
        ("{}", 1, '{"seq":7}'),
        ("{ \n }", 1, '{"seq":7}'),
        ('{"tên":"Huế","x":[1]}', 1, '{"seq":7,"tên":"Huế","x":[1]}'),
        ('{"tickets":[1,2]}', 2, '{"seq":7,"items":2,"tickets":[1,2]}'),
        ("{ }", 3, '{"seq":7,"items":3}'),
        ('{ "a":1}', 1, '{"seq":7, "a":1}'),
    ],
)
def test_live_text_is_unchanged(db_url: str, payload: str, items: int, text: str) -> None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT ioc_live_text(7, %s, %s)", (payload, items)).fetchone()
        assert row is not None and row[0] == text
        if items == 1:
            row = conn.execute("SELECT ioc_live_text(7, %s)", (payload,)).fetchone()
            assert row is not None and row[0] == text
