"""Filing field reports with their tickets: what one group of reports writes (tickets, engine
clocks, opening events, lookup codes), when the group's deadlines count differently, and when
the group holds a repeat."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from ioc.tickets.writing import ONE_STATEMENT_ROWS
from tests.conftest import RunningServer, auth, make_key

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NDJSON = {"Content-Type": "application/x-ndjson"}
CONFIG = {
    "agencies": [{"code": "so-tnmt", "name_vi": "Sở Tài nguyên và Môi trường"}],
    "rules": [{"category": "moi_truong", "agency": "so-tnmt"}],
    # Whole seconds for one category, fractions for the other: one group holds both.
    "deadlines": [
        {"subject": "ticket", "key": "moi_truong", "unit": "calendar_hours", "amount": 10},
        {"subject": "ticket", "key": "giao_thong", "unit": "working_days", "amount": 2},
    ],
}


@pytest.fixture
def source(client: httpx.Client, server: RunningServer) -> str:
    admin = make_key(server, "admin")
    answer = client.put("/v1/admin/config", json=CONFIG, headers=auth(admin))
    assert answer.status_code == 200, answer.text
    return make_key(server, "source", source="hue-f")


def report(n: int, category: str, when: datetime) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"F-{n}",
        "category": category,
        "description": f"Phản ánh số {n}",
        "lon": 107.50 + n * 0.01,  # a kilometre apart: each opens a ticket of its own
        "lat": 16.46,
        "occurred_at": when.isoformat(),
    }


def filed(server: RunningServer) -> list[tuple[Any, ...]]:
    """Per report: its ticket's category, agency, clock and opening event."""
    with psycopg.connect(server.db_url) as conn:
        return conn.execute(
            "SELECT f.external_id, t.category, t.agency, t.state, t.opened_at, t.deadline_at,"
            " t.updated_at = f.received_at, t.sla_unit, t.sla_allowed_s, t.due_soon_at,"
            " c.sla_stage, c.next_check_at, e.actor, e.action, e.to_state, e.to_agency, e.note,"
            " e.at = f.received_at, t.routing->>'how' IS NOT NULL"
            " FROM field_reports f JOIN tickets t ON t.id = f.ticket_id"
            " LEFT JOIN ticket_clocks c ON c.ticket_id = t.id"
            " JOIN ticket_events e ON e.ticket_id = t.id AND e.action = 'open'"
            " ORDER BY f.external_id"
        ).fetchall()


# A few new tickets are written by one statement, many by COPY (ioc.tickets.writing): each
# group writes the same rows.
@pytest.mark.parametrize("repeat", [1, ONE_STATEMENT_ROWS // 3 + 1], ids=["few", "many"])
def test_one_group_of_reports_with_deadlines_counted_differently(
    client: httpx.Client, server: RunningServer, source: str, repeat: int
) -> None:
    when = datetime.now(HCM).replace(microsecond=0) - timedelta(minutes=5)
    categories = ("moi_truong", "giao_thong", "chieu_sang") * repeat  # the last: no deadline
    body = "\n".join(json.dumps(report(n, c, when)) for n, c in enumerate(categories))
    answer = client.post("/v1/events/batch", content=body, headers=auth(source) | NDJSON)
    assert answer.json()["accepted"] == len(categories), answer.text
    book = server.platform.book
    everything = filed(server)
    assert len(everything) == len(categories)
    rows = [row for row in everything if row[0] in ("F-0", "F-1", "F-2")]
    assert [(*row[:2], *row[3:5]) for row in rows] == [
        ("F-0", "moi_truong", "new", when),
        ("F-1", "giao_thong", "new", when),
        ("F-2", "chieu_sang", "new", when),
    ]
    assert rows[0][2] == "so-tnmt"
    for row, category in zip(rows, categories[:3], strict=True):
        plan = book.ticket_plan(category, when)
        clock = (
            (plan.deadline_at, plan.counting, plan.allowed_s, plan.due_soon_at)
            if plan
            else (None,) * 4
        )
        assert row[5:10] == (clock[0], True, *clock[1:])
        stage = ("due_soon", plan.due_soon_at) if plan else (None, None)
        assert row[10:12] == stage
        assert row[12:16] == ("router", "open", "new", row[2])
        assert row[16].startswith("routed: ") and row[17:] == (True, True)
    assert isinstance(rows[0][8], float) and rows[0][8] == 36_000


def test_a_group_holding_a_repeat_stores_the_new_reports_once(
    client: httpx.Client, server: RunningServer, source: str
) -> None:
    when = datetime.now(HCM).replace(microsecond=0) - timedelta(minutes=5)
    first = client.post("/v1/events", json=report(0, "moi_truong", when), headers=auth(source))
    assert first.status_code == 201, first.text
    events = [report(n, "moi_truong", when) for n in range(6)]

    def post(event: dict[str, Any]) -> httpx.Response:
        return client.post("/v1/events", json=event, headers=auth(source))

    # Posted at once, the singles share write groups; the repeat is in one of them.
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, events))
    assert [a.status_code for a in answers] == [200, 201, 201, 201, 201, 201]
    assert answers[0].json()["lookup_code"] == first.json()["lookup_code"]  # the repeat keeps it
    codes = [a.json()["lookup_code"] for a in answers]
    assert len(set(codes)) == 6
    rows = filed(server)
    assert [row[0] for row in rows] == [f"F-{n}" for n in range(6)]
    with psycopg.connect(server.db_url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM ticket_clocks),"
            " (SELECT count(*) FROM ticket_events)"
        ).fetchone()
    assert counts == (6, 6, 6)
    for code in codes:
        found = client.get("/v1/public/lookup", params={"code": code})
        assert found.status_code == 200, found.text
