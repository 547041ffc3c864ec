"""SLA clocks, deadline alerts, escalation, apology letters and alert delivery, on a real database.

The engine is ticked with the instant each test chooses (time is jumped, never slept).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from websockets.sync.client import connect as ws_connect

from alerting.calendar import WorkingCalendar
from alerting.engine import SlaEngine, TickResult
from alerting.setup import load_book
from ioc.deadlines import DeadlineBook, Policy
from ioc.settings import Settings
from ioc.store.database import make_pool
from tests.conftest import RunningServer, auth, make_key, start_server, stop_server

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NDJSON = {"Content-Type": "application/x-ndjson"}

CONFIG = {
    "agencies": [
        {"code": "ubnd-tp", "name_vi": "UBND thành phố Huế"},
        {
            "code": "so-tnmt",
            "name_vi": "Sở Tài nguyên và Môi trường",
            "parent": "ubnd-tp",
            "webhook_url": "http://127.0.0.1:9/hook",
            "webhook_secret": "s3cret-s3cret-s3cret",
        },
    ],
    "rules": [{"category": "moi_truong", "agency": "so-tnmt"}],
    "deadlines": [
        {"subject": "ticket", "key": "moi_truong", "unit": "calendar_hours", "amount": 10},
        {"subject": "dossier", "key": "P-3D", "unit": "working_days", "amount": 3},
    ],
}


@pytest.fixture
def calendar() -> WorkingCalendar:
    return WorkingCalendar.for_vietnam()


@pytest.fixture
def book(calendar: WorkingCalendar) -> DeadlineBook:
    return DeadlineBook(calendar, 0.75)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=HCM)


# --- the arithmetic --------------------------------------------------------------------------


def test_working_days_skip_tet_2026(book: DeadlineBook) -> None:
    # Accepted Friday 13 Feb 2026; Tết is 16–20 Feb; day 1 is Monday 23 Feb.
    plan = book.plan(Policy("working_days", 3), at("2026-02-13T10:00"))
    assert plan.deadline_at == at("2026-02-25T17:00")
    assert plan.counting == "working"
    assert plan.allowed_s == book.office.between(at("2026-02-13T10:00"), at("2026-02-25T17:00"))


def test_working_hours_cross_a_weekend_and_tet(book: DeadlineBook) -> None:
    # Two office hours left on Friday 13 Feb, then nothing until Monday 23 Feb.
    plan = book.plan(Policy("working_hours", 8), at("2026-02-13T15:00"))
    assert plan.deadline_at == at("2026-02-23T15:30")
    # Due soon at 6 of the 8 hours: Friday's 2 h and Monday morning's 4 h.
    assert plan.due_soon_at == at("2026-02-23T11:30")


def test_swap_days_2025(book: DeadlineBook) -> None:
    # Saturday 26 Apr 2025 was worked; Friday 2 May 2025 was off.
    assert book.plan(Policy("working_days", 1), at("2025-04-25T09:00")).deadline_at == at(
        "2025-04-26T17:00"
    )
    # 30/4 and 1/5 are holidays, 2/5 swapped off, 3–4 May the weekend.
    assert book.plan(Policy("working_days", 1), at("2025-04-29T09:00")).deadline_at == at(
        "2025-05-05T17:00"
    )


def test_a_pause_keeps_the_time_that_was_left(book: DeadlineBook) -> None:
    # A Monday: 3.5 office hours before lunch, 2.5 after.
    plan = book.plan(Policy("working_hours", 6), at("2026-03-02T08:00"))
    assert plan.deadline_at == at("2026-03-02T16:00")
    # Paused at 10:00 (4 h left), resumed Wednesday 08:00: the 4 h run from there.
    deadline, due_soon = book.resumed(
        "working", plan.allowed_s, plan.deadline_at, at("2026-03-02T10:00"), at("2026-03-04T08:00")
    )
    assert deadline == at("2026-03-04T14:00")
    assert due_soon == at("2026-03-04T10:30")  # 1.5 h (25 %) of office time before the end
    # Paused after the deadline: nothing is given back.
    late = book.resumed(
        "working", plan.allowed_s, plan.deadline_at, at("2026-03-03T08:00"), at("2026-03-04T08:00")
    )
    assert late[0] == plan.deadline_at


def test_results_and_time_used(book: DeadlineBook) -> None:
    deadline = at("2026-02-25T17:00")
    assert book.result(at("2026-02-24T16:00"), deadline) == "early"
    assert book.result(at("2026-02-25T09:00"), deadline) == "on_time"
    assert book.result(at("2026-02-26T08:00"), deadline) == "late"
    # Friday 13 Feb 10:00 → Monday 23 Feb 10:00: Friday's 5 h plus Monday's 2.5 h.
    used = book.working_used(at("2026-02-13T10:00"), at("2026-02-23T10:00"))
    assert used == 7.5 * 3600
    paused = [(at("2026-02-23T07:30"), at("2026-02-23T09:30"))]
    assert book.working_used(at("2026-02-13T10:00"), at("2026-02-23T10:00"), paused) == 5.5 * 3600


# --- tickets through the API -----------------------------------------------------------------


@pytest.fixture
def configured(client: httpx.Client, server: RunningServer) -> dict[str, str]:
    admin = make_key(server, "admin")
    answer = client.put("/v1/admin/config", json=CONFIG, headers=auth(admin))
    assert answer.status_code == 200, answer.text
    return {
        "admin": admin,
        "source": make_key(server, "source", source="hue-s"),
        "agency": make_key(server, "agency", agency="so-tnmt"),
        "parent": make_key(server, "agency", agency="ubnd-tp"),
        "other": make_key(server, "agency", agency="ioc"),
        "operator": make_key(server, "operator"),
        "leader": make_key(server, "leader"),
    }


def report(n: int, when: datetime, category: str = "moi_truong") -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"S-{n}",
        "category": category,
        "description": f"Rác thải tồn đọng số {n}",
        "lon": 107.50 + n * 0.01,
        "lat": 16.46,
        "occurred_at": when.isoformat(),
        "reporter": {"name": "Trần Thị B", "phone": "0900000002"},
    }


def post_reports(client: httpx.Client, key: str, events: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(e, ensure_ascii=False) for e in events).encode()
    answer = client.post("/v1/events/batch", content=body, headers=auth(key) | NDJSON)
    assert answer.status_code == 200 and answer.json()["accepted"] == len(events), answer.text


def ticket_of(server: RunningServer, n: int) -> int:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"S-{n}",)
        ).fetchone()
    assert row is not None
    return int(row[0])


def ticket_version(server: RunningServer, ticket: int) -> str:
    """The ticket row's version (the transaction that last wrote it)."""
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT xmin::text FROM tickets WHERE id = %s", (ticket,)).fetchone()
    assert row is not None
    return str(row[0])


def engine_for(server: RunningServer, **overrides: Any) -> SlaEngine:
    platform = server.platform
    settings = platform.settings.model_copy(update=overrides)
    return SlaEngine(platform.pool, platform.clock, settings, lambda: platform.book)


def tick(server: RunningServer, engine: SlaEngine, now: datetime) -> TickResult:
    result: TickResult = server.run(engine.tick(now))
    return result


def alerts(server: RunningServer, where: str = "true", *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.db_url) as conn:
        return conn.execute(
            "SELECT subject_kind, subject_id, level, agency, escalated_to,"
            " resolved_at IS NULL, resolution FROM alerts WHERE " + where + " ORDER BY id",
            args,
        ).fetchall()


def test_ticket_warns_then_alerts_then_escalates(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    opened = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=1)
    post_reports(client, configured["source"], [report(1, opened)])
    ticket = ticket_of(server, 1)
    shown = client.get(f"/v1/tickets/{ticket}", headers=auth(configured["agency"])).json()
    assert datetime.fromisoformat(shown["deadline_at"]) == opened + timedelta(hours=10)
    version = ticket_version(server, ticket)
    engine = engine_for(server, sla_escalate_after_s=3600)
    assert tick(server, engine, opened + timedelta(hours=7)).raised == 0  # 70 % used
    assert tick(server, engine, opened + timedelta(hours=8)).raised == 1  # 80 %: due soon
    assert alerts(server) == [("ticket", str(ticket), "due_soon", "so-tnmt", None, True, None)]
    assert tick(server, engine, opened + timedelta(hours=9)).raised == 0  # nothing new
    assert tick(server, engine, opened + timedelta(hours=10, seconds=1)).raised == 1
    assert alerts(server) == [
        ("ticket", str(ticket), "due_soon", "so-tnmt", None, False, "suppressed"),
        ("ticket", str(ticket), "overdue", "so-tnmt", None, True, None),
    ]
    assert tick(server, engine, opened + timedelta(hours=11, seconds=2)).raised == 1
    assert alerts(server, "level = 'escalated'") == [
        ("ticket", str(ticket), "escalated", "so-tnmt", "ubnd-tp", True, None)
    ]
    # The parent agency sees the escalated alert; another agency sees none of them.
    seen = client.get("/v1/alerts", headers=auth(configured["parent"])).json()["alerts"]
    assert [a["level"] for a in seen] == ["escalated"]
    assert client.get("/v1/alerts", headers=auth(configured["other"])).json()["alerts"] == []
    # Later ticks do nothing more; resolving the ticket resolves its alerts.
    assert tick(server, engine, opened + timedelta(days=3)).raised == 0
    # The engine moved the clock on in ticket_clocks: the ticket row was never rewritten.
    assert ticket_version(server, ticket) == version
    for action in ("start", "resolve"):
        answer = client.post(
            f"/v1/tickets/{ticket}/actions",
            json={"action": action},
            headers=auth(configured["agency"]),
        )
        assert answer.status_code == 200, answer.text
    assert all(not active for *_, active, _ in alerts(server))
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT sla_result, resolution_working_s >= 0, first_response_at IS NOT NULL,"
            " c.next_check_at FROM tickets t JOIN ticket_clocks c ON c.ticket_id = t.id"
            " WHERE t.id = %s",
            (ticket,),
        ).fetchone()
    # Resolved (in real time) about an hour after opening: well within the ten hours.
    assert row is not None and row[0] in ("early", "on_time") and row[1:] == (True, True, None)


def test_acting_on_an_overdue_ticket_defers_escalation(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    opened = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=11)
    post_reports(client, configured["source"], [report(1, opened)])
    ticket = ticket_of(server, 1)
    # It arrives an hour after its deadline: a day's grace keeps such late reports paging.
    engine = engine_for(server, sla_escalate_after_s=4 * 3600, sla_backfill_grace_s=86400)
    now = datetime.now(HCM)
    assert tick(server, engine, now).raised == 1  # straight to overdue: no due-soon first
    assert [a[2] for a in alerts(server)] == ["overdue"]
    client.post(
        f"/v1/tickets/{ticket}/actions",
        json={"action": "start"},
        headers=auth(configured["agency"]),
    )
    # Four hours after the deadline, but only three since someone acted: not yet.
    assert tick(server, engine, opened + timedelta(hours=14)).raised == 0
    assert tick(server, engine, now + timedelta(hours=4, minutes=1)).raised == 1
    assert [a[2] for a in alerts(server)] == ["overdue", "escalated"]


def test_waiting_for_the_citizen_pauses_the_clock(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    opened = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=2)
    post_reports(client, configured["source"], [report(1, opened)])
    ticket = ticket_of(server, 1)
    agency = auth(configured["agency"])
    client.post(f"/v1/tickets/{ticket}/actions", json={"action": "start"}, headers=agency)
    answer = client.post(
        f"/v1/tickets/{ticket}/actions",
        json={"action": "wait", "reason": "chờ người dân bổ sung ảnh"},
        headers=agency,
    )
    assert answer.status_code == 200, answer.text
    engine = engine_for(server)
    assert tick(server, engine, opened + timedelta(days=2)).raised == 0  # paused: no alert
    before = client.get(f"/v1/tickets/{ticket}", headers=agency).json()["deadline_at"]
    client.post(f"/v1/tickets/{ticket}/actions", json={"action": "resume"}, headers=agency)
    after = client.get(f"/v1/tickets/{ticket}", headers=agency).json()["deadline_at"]
    # About eight hours were left when it paused; they run again from the resumption.
    gained = datetime.fromisoformat(after) - datetime.fromisoformat(before)
    assert timedelta(0) < gained < timedelta(minutes=1)
    assert datetime.fromisoformat(after) - datetime.now(HCM) > timedelta(hours=7, minutes=55)


# --- dossiers ----------------------------------------------------------------------------------


def dossier_event(dossier: str, n: int, event: str, when: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "dossier_event",
        "external_id": f"{dossier}-{n}",
        "dossier_id": dossier,
        "procedure_code": extra.pop("procedure_code", "P-3D"),
        "agency": "so-tnmt",
        "event": event,
        "at": when,
        "channel": "online",
        "online_level": "full_process",
        **extra,
    }


def dossier(client: httpx.Client, key: str, dossier_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/dossiers/{dossier_id}", headers=auth(key))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_dossier_clock_across_tet_with_a_supplement_pause(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    events = [
        dossier_event(
            "HS-1", 1, "registered", "2026-02-12T16:00:00+07:00", online_level="full_process"
        ),
        dossier_event("HS-1", 2, "accepted", "2026-02-13T10:00:00+07:00"),
        dossier_event("HS-1", 4, "supplement_received", "2026-02-24T09:30:00+07:00"),
        dossier_event("HS-1", 3, "supplement_requested", "2026-02-23T09:30:00+07:00"),
        dossier_event("HS-1", 5, "result_returned", "2026-02-26T10:00:00+07:00", paid_online=True),
    ]
    post_reports(client, configured["source"], events[:3])  # out of order, in two batches
    post_reports(client, configured["source"], events[3:])
    state = dossier(client, configured["operator"], "HS-1")
    # Three working days from Friday 13 Feb (Tết 16–20 Feb): 25 Feb 17:00; one paused day more.
    assert datetime.fromisoformat(state["deadline_at"]) == at("2026-02-26T17:00")
    assert state["state"] == "result_returned" and state["result"] == "on_time"
    # Paused Monday 09:30 to Tuesday 09:30: one office day.
    assert state["paused_s"] == 7.5 * 3600 and state["paid_online"] is True
    assert state["online_level"] == "full_process"
    # Used: Fri 5 h + Mon 2 h (until the pause) + Tue 5.5 h + Wed 7.5 h + Thu 2.5 h.
    assert state["used_working_s"] == (5 + 2 + 5.5 + 7.5 + 2.5) * 3600


def test_appointment_date_is_the_deadline_and_a_late_dossier_gets_an_apology(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    post_reports(
        client,
        configured["source"],
        [
            dossier_event(
                "HS-2",
                1,
                "accepted",
                "2026-03-02T08:00:00+07:00",
                procedure_code="P-OTHER",
                appointment_at="2026-03-04T17:00:00+07:00",
            ),
        ],
    )
    state = dossier(client, configured["operator"], "HS-2")
    assert datetime.fromisoformat(state["deadline_at"]) == at("2026-03-04T17:00")
    # Sent now, about March: history, which pages nobody unless a grace covers it.
    engine = engine_for(server, apology_extension_days=5, sla_backfill_grace_s=3650 * 86400)
    result = tick(server, engine, at("2026-03-05T08:00"))
    assert (result.raised, result.apologies) == (1, 1)
    assert tick(server, engine, at("2026-03-05T09:00")).apologies == 0  # one letter only
    letters = dossier(client, configured["operator"], "HS-2")["apologies"]
    assert len(letters) == 1 and letters[0]["form"] == "04"
    assert datetime.fromisoformat(letters[0]["new_appointment_at"]) == at("2026-03-12T17:00")
    assert datetime.fromisoformat(letters[0]["old_appointment_at"]) == at("2026-03-04T17:00")
    # Returned late: the result says so and the alert is resolved.
    post_reports(
        client,
        configured["source"],
        [
            dossier_event(
                "HS-2", 2, "result_returned", "2026-03-06T10:00:00+07:00", procedure_code="P-OTHER"
            )
        ],
    )
    assert dossier(client, configured["operator"], "HS-2")["result"] == "late"
    assert alerts(server, "subject_kind = 'dossier'") == [
        ("dossier", "HS-2", "overdue", "so-tnmt", None, False, "subject_closed")
    ]


# --- imported history -------------------------------------------------------------------------


def test_imported_tickets_page_nobody_for_deadlines_before_they_arrived(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    now = datetime.now(HCM).replace(microsecond=0)
    old = [report(n, now - timedelta(days=30, hours=n)) for n in range(20)]
    post_reports(client, configured["source"], [*old, report(99, now - timedelta(hours=1))])
    engine = engine_for(server)
    result = tick(server, engine, now + timedelta(hours=12))
    # Only the live report's deadline came after it arrived; each old one passed its deadline
    # and its escalation before it arrived.
    assert (result.tickets, result.raised, result.backfilled) == (21, 1, 40)
    assert alerts(server) == [
        ("ticket", str(ticket_of(server, 99)), "overdue", "so-tnmt", None, True, None)
    ]
    assert [kind for _, kind, _ in outbox(server)] == ["alert"]
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ticket_clocks WHERE next_check_at IS NOT NULL"
            " AND ticket_id <> %s",
            (ticket_of(server, 99),),
        ).fetchone()
    assert row == (0,)  # the old clocks moved on quietly: later ticks do not look at them
    assert tick(server, engine, now + timedelta(days=3)).backfilled == 0


def test_a_report_arriving_after_its_deadline_still_escalates_later(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    opened = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=11)
    post_reports(client, configured["source"], [report(1, opened)])
    engine = engine_for(server, sla_escalate_after_s=4 * 3600)
    # Due an hour before it arrived: no overdue alert; its escalation comes after it arrived.
    assert tick(server, engine, opened + timedelta(hours=11, minutes=30)).raised == 0
    assert tick(server, engine, opened + timedelta(hours=14, minutes=1)).raised == 1
    assert [a[2:5] for a in alerts(server)] == [("escalated", "so-tnmt", "ubnd-tp")]


def test_imported_dossiers_page_nobody_and_get_no_apology(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    soon = datetime.now(HCM).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    events = [
        dossier_event(  # history: due in March, sent now
            "HS-OLD",
            1,
            "accepted",
            "2026-03-02T08:00:00+07:00",
            procedure_code="P-OTHER",
            appointment_at="2026-03-04T17:00:00+07:00",
        ),
        dossier_event(  # live: due tomorrow
            "HS-NEW",
            1,
            "accepted",
            (soon - timedelta(days=1, hours=2)).isoformat(),
            procedure_code="P-OTHER",
            appointment_at=soon.isoformat(),
        ),
    ]
    post_reports(client, configured["source"], events)
    engine = engine_for(server)
    replayed = tick(server, engine, at("2026-03-05T08:00"))  # as of then, as a replay would
    assert (replayed.dossiers, replayed.raised, replayed.apologies) == (1, 0, 0)
    result = tick(server, engine, soon + timedelta(hours=1))
    assert (result.raised, result.apologies) == (1, 1)
    assert alerts(server) == [("dossier", "HS-NEW", "overdue", "so-tnmt", None, True, None)]
    assert dossier(client, configured["operator"], "HS-OLD")["apologies"] == []
    assert len(dossier(client, configured["operator"], "HS-NEW")["apologies"]) == 1


# --- many engines, crashes -------------------------------------------------------------------


def _many_due(client: httpx.Client, key: str, count: int, start: int = 0) -> datetime:
    opened = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=1)
    post_reports(client, key, [report(start + n, opened) for n in range(count)])
    return opened + timedelta(hours=12)


def _counts(server: RunningServer) -> tuple[int, int]:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (subject_id, level)) FROM alerts"
            " WHERE level = 'overdue'"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_two_engines_at_once_raise_each_alert_once(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    later = _many_due(client, configured["source"], 600)
    settings = server.platform.settings.model_copy(update={"sla_batch": 50})

    async def race() -> list[TickResult]:
        pools = [make_pool(server.db_url, settings) for _ in range(2)]
        for pool in pools:
            await pool.open(wait=True)
        try:
            engines = [
                SlaEngine(pool, server.platform.clock, settings, lambda: server.platform.book)
                for pool in pools
            ]
            return list(await asyncio.gather(*(e.tick(later) for e in engines)))
        finally:
            for pool in pools:
                await pool.close()

    results = server.run(race())
    assert sum(r.raised for r in results) == 600
    assert _counts(server) == (600, 600)


def test_engine_killed_mid_tick_loses_nothing_and_doubles_nothing(
    client: httpx.Client, server: RunningServer, configured: dict[str, str], settings: Settings
) -> None:
    later = _many_due(client, configured["source"], 300)
    env = {**os.environ, "IOC_DATABASE_URL": server.db_url, "IOC_SLA_BATCH": "100"}
    # Hold the alerts table so the engine blocks inside its first batch's transaction.
    with psycopg.connect(server.db_url) as blocker:
        blocker.execute("LOCK TABLE alerts IN EXCLUSIVE MODE")
        engine = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "alerts", "tick", "--at", later.isoformat()],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            waiting = _wait_for_blocked_engine(server.db_url, engine)
            assert waiting, "the engine never reached the alerts table"
        finally:
            engine.send_signal(signal.SIGKILL)
            engine.wait(30)
        blocker.rollback()
    assert _counts(server) == (0, 0)  # the killed batch left nothing behind
    # Restarted, it raises every alert exactly once.
    restarted = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "alerts", "tick", "--at", later.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restarted.returncode == 0, restarted.stderr
    assert "300 alerts raised" in restarted.stdout
    assert _counts(server) == (300, 300)


def _wait_for_blocked_engine(url: str, engine: subprocess.Popen[Any]) -> bool:
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline and engine.poll() is None:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%INSERT INTO alerts%%'"
            ).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.05)
    return False


# --- delivery ----------------------------------------------------------------------------------


def outbox(server: RunningServer) -> list[tuple[str, str, str]]:
    with psycopg.connect(server.db_url) as conn:
        rows = conn.execute("SELECT agency, kind, idempotency_key FROM outbox ORDER BY id")
        return [tuple(r) for r in rows.fetchall()]  # type: ignore[misc]


def test_immediate_digest_silence_ack_and_repeat(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    opened = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=1)
    post_reports(client, configured["source"], [report(1, opened), report(2, opened)])
    engine = engine_for(server, alert_digest_s=3600, alert_repeat_s=7200)
    soon = opened + timedelta(hours=8)
    assert tick(server, engine, soon).raised == 2
    assert outbox(server) == []  # due-soon alerts wait for the digest
    boundary = datetime.fromtimestamp((soon.timestamp() // 3600 + 1) * 3600, HCM)
    tick(server, engine, boundary)
    assert [(a, k) for a, k, _ in outbox(server)] == [("so-tnmt", "digest")]
    with psycopg.connect(server.db_url) as conn:
        (payload,) = conn.execute("SELECT payload FROM outbox").fetchone()  # type: ignore[misc]
    assert len(payload["alerts"]) == 2 and payload["type"] == "digest"
    # Overdue goes out at once, one message per alert.
    late = opened + timedelta(hours=10, minutes=1)
    tick(server, engine, late)
    assert [k for _, k, _ in outbox(server)] == ["digest", "alert", "alert"]
    # Acknowledge one; silence nothing yet. Two hours on, only the unacknowledged one repeats.
    listed = client.get(
        "/v1/alerts", params={"level": "overdue"}, headers=auth(configured["agency"])
    ).json()["alerts"]
    first, second = sorted(listed, key=lambda a: int(a["subject_id"]))
    acked = client.post(f"/v1/alerts/{first['id']}/ack", headers=auth(configured["agency"]))
    assert acked.status_code == 200 and acked.json()["acked_at"] is not None
    tick(server, engine, late + timedelta(hours=2, seconds=1))
    repeated = [key for _, kind, key in outbox(server) if kind == "alert"]
    assert len(repeated) == 3 and repeated[-1].startswith(f"alert:{second['id']}:1:")
    # A silence on the agency holds the next repeat back until it ends.
    silence = client.post(
        "/v1/silences",
        json={
            "matchers": {"agency": "so-tnmt", "rule": "deadline"},
            "ends_at": (late + timedelta(days=1)).isoformat(),
            "comment": "bảo trì hệ thống",
        },
        headers=auth(configured["agency"]),
    )
    assert silence.status_code == 201, silence.text
    tick(server, engine, late + timedelta(hours=4, seconds=2))
    assert len([k for _, k, _ in outbox(server) if k == "alert"]) == 3


def test_an_agency_silence_holds_back_only_deliveries_to_that_agency(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["agencies"][0] |= {
        "webhook_url": "http://127.0.0.1:9/parent",
        "webhook_secret": "p" * 20,
    }
    answer = client.put("/v1/admin/config", json=config, headers=auth(configured["admin"]))
    assert answer.status_code == 200, answer.text
    opened = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=1)
    post_reports(client, configured["source"], [report(1, opened)])
    deadline = opened + timedelta(hours=10)
    silence = client.post(
        "/v1/silences",
        json={
            "matchers": {"agency": "so-tnmt"},
            "ends_at": (deadline + timedelta(hours=2)).isoformat(),
        },
        headers=auth(configured["agency"]),
    )
    assert silence.status_code == 201, silence.text
    engine = engine_for(server, sla_escalate_after_s=3600)
    tick(server, engine, deadline + timedelta(seconds=1))  # overdue: for so-tnmt, held
    assert outbox(server) == []
    # Escalated: the parent agency is told at once; the silenced agency is not.
    tick(server, engine, deadline + timedelta(hours=1, seconds=1))
    escalated = alerts(server, "level = 'escalated'")
    assert [row[3:5] for row in escalated] == [("so-tnmt", "ubnd-tp")]
    assert [(agency, kind) for agency, kind, _ in outbox(server)] == [("ubnd-tp", "alert")]
    # When the silence ends, so-tnmt gets both alerts, and the parent nothing twice.
    tick(server, engine, deadline + timedelta(hours=2, seconds=1))
    assert [(agency, kind) for agency, kind, _ in outbox(server)] == [
        ("ubnd-tp", "alert"),
        ("so-tnmt", "alert"),
        ("so-tnmt", "alert"),
    ]
    # An agency cannot hold back the escalations of its alerts to another agency.
    refused = client.post(
        "/v1/silences",
        json={
            "matchers": {"agency": "so-tnmt", "escalated_to": "ubnd-tp"},
            "ends_at": (deadline + timedelta(hours=2)).isoformat(),
        },
        headers=auth(configured["agency"]),
    )
    assert refused.status_code == 403, refused.text


def test_ending_a_silence_early_releases_what_it_held(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    opened = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=1)
    post_reports(client, configured["source"], [report(1, opened)])
    deadline = opened + timedelta(hours=10)
    silence = client.post(
        "/v1/silences",
        json={
            "matchers": {"agency": "so-tnmt"},
            "ends_at": (deadline + timedelta(days=2)).isoformat(),
        },
        headers=auth(configured["agency"]),
    ).json()
    engine = engine_for(server)
    tick(server, engine, deadline + timedelta(seconds=1))
    assert outbox(server) == []
    ended = client.delete(f"/v1/silences/{silence['id']}", headers=auth(configured["agency"]))
    assert ended.status_code == 200, ended.text
    tick(server, engine, deadline + timedelta(minutes=1))
    assert [(agency, kind) for agency, kind, _ in outbox(server)] == [("so-tnmt", "alert")]


def test_alert_api_validation_and_scoping(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    agency = auth(configured["agency"])
    bad = [
        ({"matchers": {}, "ends_at": "2030-01-01T00:00:00+07:00"}, "matchers"),
        (
            {"matchers": {"colour": "red"}, "ends_at": "2030-01-01T00:00:00+07:00"},
            "matchers.colour",
        ),
        ({"matchers": {"agency": "so-tnmt"}, "ends_at": "2001-01-01T00:00:00+07:00"}, "ends_at"),
        ({"matchers": {"agency": "so-tnmt"}, "ends_at": "2030-01-01T00:00:00"}, "ends_at"),
    ]
    for body, field in bad:
        answer = client.post("/v1/silences", json=body, headers=agency)
        assert answer.status_code == 422, answer.text
        assert field in answer.text
    other = client.post(
        "/v1/silences",
        json={"matchers": {"agency": "ioc"}, "ends_at": "2030-01-01T00:00:00+07:00"},
        headers=agency,
    )
    assert other.status_code == 403
    leader = client.post(
        "/v1/silences",
        json={"matchers": {"rule": "deadline"}, "ends_at": "2030-01-01T00:00:00+07:00"},
        headers=auth(configured["leader"]),
    )
    assert leader.status_code == 403
    assert client.get("/v1/alerts", params={"status": "maybe"}, headers=agency).status_code == 422
    assert client.get("/v1/alerts", params={"colour": "x"}, headers=agency).status_code == 422
    assert client.get("/v1/alerts", params={"agency": "ioc"}, headers=agency).status_code == 403
    assert client.get("/v1/alerts/12345", headers=agency).status_code == 404
    assert (
        client.post("/v1/alerts/12345/ack", headers=auth(configured["leader"])).status_code == 403
    )
    assert client.get("/v1/alerts").status_code == 401
    assert client.get("/v1/dossiers/none", headers=auth(configured["operator"])).status_code == 404
    # Pagination walks every alert once.
    later = _many_due(client, configured["source"], 7)
    tick(server, engine_for(server), later)
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/alerts", params=params, headers=agency).json()
        seen += [a["id"] for a in page["alerts"]]
        if (cursor := page["next"]) is None:
            break
    assert len(seen) == len(set(seen)) == 7


def test_alerts_reach_the_live_feed(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    later = _many_due(client, configured["source"], 1)
    url = f"{server.ws_url}/v1/alerts/ws"
    with (
        ws_connect(url, additional_headers=auth(configured["agency"])) as mine,
        ws_connect(url, additional_headers=auth(configured["other"])) as theirs,
    ):
        tick(server, engine_for(server), later)
        batch = json.loads(mine.recv(timeout=10))
        assert isinstance(batch["seq"], int) and len(batch["alerts"]) == 1
        message = batch["alerts"][0]
        assert message["level"] == "overdue" and message["agency"] == "so-tnmt"
        assert message["status"] == "active"
        with pytest.raises(TimeoutError):
            theirs.recv(timeout=0.5)


@pytest.fixture
def engine_server(settings: Settings) -> Iterator[RunningServer]:
    thread, running = start_server(
        settings.model_copy(
            update={"sla_engine": True, "sla_tick_s": 0.2, "sla_backfill_grace_s": 3 * 86400}
        )
    )
    yield running
    stop_server(thread)


def test_the_server_runs_the_engine(engine_server: RunningServer) -> None:
    source = make_key(engine_server, "source", source="hue-s")
    operator = make_key(engine_server, "operator")
    with httpx.Client(base_url=engine_server.url, timeout=30) as client:
        opened = datetime.now(HCM) - timedelta(days=2)
        post_reports(client, source, [report(1, opened, category="giao_thong")])
        deadline = time.monotonic() + 30
        levels: list[str] = []
        while time.monotonic() < deadline and "escalated" not in levels:
            listed = client.get("/v1/alerts", headers=auth(operator)).json()["alerts"]
            levels = [a["level"] for a in listed]
            time.sleep(0.1)
    # Two days past a 24-hour deadline with nobody acting: overdue and escalated.
    assert sorted(levels) == ["escalated", "overdue"]


def test_policies_load_from_config(
    client: httpx.Client, server: RunningServer, configured: dict[str, str]
) -> None:
    async def loaded() -> DeadlineBook:
        async with server.platform.pool.connection() as conn:
            return await load_book(conn, server.platform.settings)

    book = server.run(loaded())
    assert book.ticket_policies["moi_truong"] == Policy("calendar_hours", 10)
    assert book.dossier_policies["P-3D"] == Policy("working_days", 3)
    shown = client.get("/v1/admin/config", headers=auth(configured["admin"])).json()
    assert {"subject": "dossier", "key": "P-3D", "unit": "working_days", "amount": 3.0} in shown[
        "deadlines"
    ]
    bad = dict(
        CONFIG,
        deadlines=[{"subject": "ticket", "key": "nope", "unit": "working_days", "amount": 2}],
    )
    answer = client.put("/v1/admin/config", json=bad, headers=auth(configured["admin"]))
    assert answer.status_code == 422 and "nope" in answer.text


def test_the_example_deployment_config_loads(server: RunningServer) -> None:
    from pathlib import Path

    from ioc.routing.rules import apply_config, read_config

    config = read_config(Path(__file__).parent.parent / "deploy" / "hue-responsibility.toml")
    assert any(d.subject == "dossier" for d in config.deadlines)

    async def load() -> dict[str, int]:
        async with server.platform.pool.connection() as conn:
            return await apply_config(conn, config)

    assert server.run(load())["deadlines"] == len(config.deadlines)
