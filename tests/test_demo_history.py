"""The demo's history on a fresh database: three months of reports worked by named officials
and dossiers through every channel, so the leaders' review has figures; and the officials who
keep working the live queue."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import httpx
import psycopg
import pytest

from ingest.demo import _map, _officials
from ingest.demo_history import SOURCE, Seeded, seed_history
from ingest.demo_officials import OfficialsAtWork
from ioc.clock import ManualClock
from ioc.events.kinds import Channel
from tests.conftest import RunningServer, auth, make_key


@pytest.fixture
def demo(server: RunningServer, tmp_path: Path) -> RunningServer:
    """The demo's map, rules, deadline policies and officials (as ``ioc demo`` sets them up)."""
    server.run(_map(server.platform, tmp_path))
    server.run(_officials(server.platform))
    return server


@pytest.fixture
def seeded(demo: RunningServer) -> Seeded:
    started = time.perf_counter()
    result: Seeded = demo.run(seed_history(demo.platform, demo.platform.clock.now()))
    print(f"seeded {result} in {time.perf_counter() - started:.1f} s")
    return result


def review(client: httpx.Client, key: str, **params: str) -> dict[str, Any]:
    answer = client.get("/v1/review", params=params, headers=auth(key))
    assert answer.status_code == 200, answer.text
    return {name: table["rows"] for name, table in answer.json()["tables"].items()}


def test_the_review_has_figures_per_agency_after_seeding(
    demo: RunningServer, seeded: Seeded, client: httpx.Client
) -> None:
    assert seeded.reports > 1000 and seeded.worked > 1000 and seeded.dossiers > 500
    now = demo.platform.clock.now()
    since = f"{now - timedelta(days=90):%Y-%m}"
    leader = make_key(demo, "leader")
    tables = review(client, leader, since=since, until=f"{now:%Y-%m}")
    agencies = {row["agency"]: row for row in tables["agencies"] if row["agency"] != "*"}
    worked = ("ca-tp", "hepco", "huewaco", "so-xd", "so-nnmt")
    for code in worked:
        row = agencies[code]
        assert row["responded"] > 0 and row["response_median_h"] is not None, row
        assert row["early"] + row["on_time"] > 0 and row["late"] > 0, row
        assert 0 < row["on_time_rate"] < 1, row
    dossiers = [row for row in tables["dossiers"] if row["agency"] != "*"]
    assert dossiers and all(row["received"] > 0 for row in dossiers)
    assert any(row["late_rate"] and row["on_time_rate"] for row in dossiers)
    assert any(row["online_rate"] and row["online_rate"] < 1 for row in dossiers)
    by_official = review(client, leader, since=since, agency="hepco")["officials"]
    names = {row.get("name") or row.get("official") for row in by_official}
    assert {"Nguyễn Thị Lan", "Trần Văn Minh"} <= {str(n).split(" (")[0] for n in names}


def test_every_official_move_is_in_the_history_by_name_and_seeding_is_once(
    demo: RunningServer, seeded: Seeded
) -> None:
    with psycopg.connect(demo.db_url) as conn:
        people = {
            f"{name} ({login})": agency
            for login, name, agency in conn.execute("SELECT login, name, agency FROM users")
        }
        moves = conn.execute(
            """SELECT e.actor, e.action, e.to_agency, e.note, t.assignee FROM ticket_events e
               JOIN tickets t ON t.id = e.ticket_id JOIN field_reports f ON f.id = t.report_id
               WHERE f.source = %s AND e.actor <> 'router'""",
            (SOURCE,),
        ).fetchall()
        channels = {c for (c,) in conn.execute("SELECT DISTINCT channel FROM dossiers")}
        unworked = conn.execute(
            """SELECT count(*) FROM tickets t JOIN field_reports f ON f.id = t.report_id
               WHERE f.source = %s AND t.resolved_at IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM ticket_events e WHERE e.ticket_id = t.id
                                 AND e.action = 'resolve')""",
            (SOURCE,),
        ).fetchone()
    assert len(moves) == seeded.actions and seeded.actions >= 2 * seeded.worked
    assert {action for _, action, _, _, _ in moves} == {"assign", "start", "resolve", "close"}
    for actor, action, agency, note, assignee in moves:
        assert people.get(actor) == agency, (actor, action)  # an official of the ticket's agency
        if action == "assign":
            assert re.fullmatch(r"assignee: .+ \(" + re.escape(assignee) + r"\)", note)
    assert unworked == (0,)
    assert channels == set(get_args(Channel))
    again: Seeded = demo.run(seed_history(demo.platform, demo.platform.clock.now()))
    assert again.skipped and again.reports == 0  # once per database


def test_officials_work_the_live_queue_as_themselves(
    demo: RunningServer, client: httpx.Client
) -> None:
    key = make_key(demo, "source", source="hue-s")
    event = {
        "kind": "field_report",
        "external_id": "live-1",
        "category": "moi_truong",
        "description": "Rác",
        "lon": 107.585,
        "lat": 16.463,
        "occurred_at": demo.platform.clock.now().isoformat(),
    }
    assert client.post("/v1/events", json=event, headers=auth(key)).status_code == 201
    clock = ManualClock(demo.platform.clock.now() + timedelta(minutes=5))
    work = OfficialsAtWork(demo.platform, clock)
    done = [demo.run(work.step()) for _ in range(3)]
    with psycopg.connect(demo.db_url) as conn:
        ticket, state, agency = conn.execute(
            "SELECT t.id, t.state, t.agency FROM tickets t JOIN field_reports f"
            " ON f.ticket_id = t.id WHERE f.external_id = 'live-1'"
        ).fetchone() or (None, None, None)
        history = conn.execute(
            "SELECT action, actor FROM ticket_events WHERE ticket_id = %s AND action <> 'open'"
            " ORDER BY id",
            (ticket,),
        ).fetchall()
        names = {
            f"{n} ({lg})"
            for n, lg in conn.execute("SELECT name, login FROM users WHERE agency = %s", (agency,))
        }
    assert [d[1] for d in done if d] == ["assign", "start", "resolve"]
    assert state == "resolved"
    assert [a for a, _ in history] == ["assign", "start", "resolve"]
    assert {actor for _, actor in history} <= names
