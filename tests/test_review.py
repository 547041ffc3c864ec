"""The leaders' review: figures checked against a direct computation, access, CSV, the page.

Tickets and dossiers go in through the real API, and the agencies act on the tickets through
it too, at instants the test chooses: the server's clock is held where the test puts it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import statistics
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy
import psycopg
import pytest

from ioc.clock import ManualClock
from ioc.settings import Settings
from maps.review import percentiles as review_percentiles
from maps.review.page import shown, table_csv
from maps.review.period import ReviewQuery, parse_query
from tests.conftest import RunningServer, auth, log_in, make_key, start_server, stop_server

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NDJSON = {"Content-Type": "application/x-ndjson"}
JUNE = {"since": "2025-06", "until": "2025-06"}
REVIEW_AT = datetime(2025, 6, 10, 12, 0, tzinfo=HCM)
CONFIG = {
    "agencies": [
        {"code": "so-tnmt", "name_vi": "Sở Tài nguyên và Môi trường"},
        {"code": "ca-tp", "name_vi": "Công an thành phố Huế"},
    ],
    "rules": [
        {"category": "moi_truong", "agency": "so-tnmt"},
        {"category": "giao_thong", "agency": "ca-tp"},
    ],
}
# n, category, opened (2 June 2025, local), first action after (h), resolved after (h) or a
# final action. moi_truong allows 48 h, giao_thong 24 h (calendar hours).
TICKETS: list[tuple[int, str, str, float | None, float | str | None]] = [
    (1, "moi_truong", "08:00", 1, 3),  # early
    (2, "moi_truong", "08:10", 2, 26),  # early: done the day before the deadline's day
    (3, "moi_truong", "08:20", 0.5, 47),  # on time: done on the deadline's day, before it
    (4, "moi_truong", "08:30", 5, 72),  # late
    (5, "moi_truong", "08:40", 1, None),  # still open, overdue by the review
    (6, "moi_truong", "08:50", None, None),  # never touched, overdue
    (7, "giao_thong", "09:00", 0.25, 4),  # early
    (8, "giao_thong", "09:10", 3, 30),  # late
    (9, "giao_thong", "09:20", 1, "reject"),  # rejected: no result
]


class HeldClock(ManualClock):
    """Stands where the test puts it; the server's background loops still sleep in real time."""

    def set(self, when: datetime) -> None:
        self.advance((when - self.now()).total_seconds())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
def clock() -> HeldClock:
    return HeldClock(datetime(2025, 6, 2, 7, 0, tzinfo=HCM))


@pytest.fixture
def server(settings: Settings, clock: HeldClock) -> Iterator[RunningServer]:
    thread, running = start_server(settings, clock)
    yield running
    stop_server(thread)


@pytest.fixture
def keys(client: httpx.Client, server: RunningServer) -> dict[str, str]:
    admin = make_key(server, "admin")
    answer = client.put("/v1/admin/config", json=CONFIG, headers=auth(admin))
    assert answer.status_code == 200, answer.text
    return {
        "admin": admin,
        "leader": make_key(server, "leader"),
        "operator": make_key(server, "operator"),
        "agency": make_key(server, "agency", agency="so-tnmt"),
        "source": make_key(server, "source", source="hue-s"),
    }


def opened_at(clock_text: str) -> datetime:
    hour, minute = (int(p) for p in clock_text.split(":"))
    return datetime(2025, 6, 2, hour, minute, tzinfo=HCM)


def report(n: int, category: str, when: datetime) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"R-{n}",
        "category": category,
        "description": f"Phản ánh số {n}",
        "lon": 107.50 + n * 0.01,  # a kilometre apart: no report joins another's ticket
        "lat": 16.46,
        "occurred_at": when.isoformat(),
    }


def post_batch(client: httpx.Client, key: str, events: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(e, ensure_ascii=False) for e in events).encode()
    answer = client.post("/v1/events/batch", content=body, headers=auth(key) | NDJSON)
    assert answer.status_code == 200 and answer.json()["accepted"] == len(events), answer.text


def ticket_of(server: RunningServer, n: int) -> int:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"R-{n}",)
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def act(client: httpx.Client, key: str, ticket: int, action: str, **extra: str) -> None:
    body = {"action": action, **extra}
    answer = client.post(f"/v1/tickets/{ticket}/actions", json=body, headers=auth(key))
    assert answer.status_code == 200, answer.text


@pytest.fixture
def history(
    client: httpx.Client, server: RunningServer, clock: HeldClock, keys: dict[str, str]
) -> dict[int, int]:
    """The tickets of TICKETS, reported and worked at their own times; n → ticket id."""
    steps: list[tuple[datetime, int, str]] = []
    for n, _, opened, first, last in TICKETS:
        start = opened_at(opened)
        steps.append((start, n, "report"))
        if first is not None:
            steps.append((start + timedelta(hours=first), n, "start"))
        if isinstance(last, float | int):
            steps.append((start + timedelta(hours=last), n, "resolve"))
        elif last == "reject":
            steps.append((start + timedelta(hours=2), n, "reject"))
    tickets: dict[int, int] = {}
    categories = {n: category for n, category, *_ in TICKETS}
    for when, n, step in sorted(steps):
        clock.set(when + timedelta(seconds=1))
        if step == "report":
            post_batch(client, keys["source"], [report(n, categories[n], when)])
            tickets[n] = ticket_of(server, n)
        elif step == "reject":
            act(client, keys["admin"], tickets[n], "reject", reason="không thuộc thẩm quyền")
        else:
            act(client, keys["admin"], tickets[n], step)
    # A report in July: outside the June review.
    clock.set(datetime(2025, 7, 1, 9, 0, tzinfo=HCM))
    post_batch(client, keys["source"], [report(10, "moi_truong", clock.now())])
    clock.set(REVIEW_AT)
    return tickets


def review_json(client: httpx.Client, key: str, **params: str) -> dict[str, Any]:
    answer = client.get("/v1/review", params={**JUNE, **params}, headers=auth(key))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def rows_by(table: dict[str, Any], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in table["rows"]}


def percentile_bounds(values: list[float], q: float) -> tuple[float, float]:
    """The two values around rank q·(n−1): a percentile lies between them."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    return ordered[int(rank)], ordered[min(len(ordered) - 1, int(rank) + 1)]


def assert_percentile(shown_h: float | None, values: list[float], q: float) -> None:
    """Read from 2 % bins: within 2 % of the values around the rank (shown rounded to 0.01 h)."""
    assert shown_h is not None
    low, high = percentile_bounds(values, q)
    assert low / 1.02 / 3600 - 0.005 <= shown_h <= high * 1.02 / 3600 + 0.005, (shown_h, low, high)


# --- tickets ---------------------------------------------------------------------------------


def test_ticket_figures_match_a_direct_computation(
    client: httpx.Client, server: RunningServer, keys: dict[str, str], history: dict[int, int]
) -> None:
    review = review_json(client, keys["leader"])
    with psycopg.connect(server.db_url) as conn:
        tickets = conn.execute(
            """SELECT agency, category, state, response_working_s, resolution_working_s,
                      sla_result, deadline_at FROM tickets
               WHERE opened_at >= '2025-06-01 00:00+07' AND opened_at < '2025-07-01 00:00+07'"""
        ).fetchall()
    assert len(tickets) == 9  # the July report is not in June
    agencies = rows_by(review["tables"]["agencies"], "agency")
    assert set(agencies) == {None, "so-tnmt", "ca-tp"}
    for code in ("so-tnmt", "ca-tp", None):
        mine = [t for t in tickets if code is None or t[0] == code]
        row = agencies[code]
        results = [t[5] for t in mine if t[5] is not None]
        assert row["received"] == len(mine)
        assert row["responded"] == sum(t[3] is not None for t in mine)
        assert row["resolved"] == sum(t[4] is not None for t in mine)
        assert (row["early"], row["on_time"], row["late"]) == tuple(
            results.count(r) for r in ("early", "on_time", "late")
        )
        assert row["on_time_rate"] == round(sum(r != "late" for r in results) / len(results), 4)
        open_late = [
            t for t in mine if t[2] not in ("resolved", "closed", "rejected") and t[6] < REVIEW_AT
        ]
        assert row["overdue_now"] == len(open_late)
        for column, index in (("response", 3), ("resolution", 4)):
            values = [t[index] for t in mine if t[index] is not None]
            assert_percentile(row[f"{column}_median_h"], values, 0.5)
            assert_percentile(row[f"{column}_p90_h"], values, 0.9)
    # The cases as designed: so-tnmt 2 early, 1 on time, 1 late; two open and overdue.
    assert agencies["so-tnmt"]["on_time_rate"] == 0.75
    assert agencies["so-tnmt"]["overdue_now"] == 2
    assert agencies["ca-tp"]["on_time_rate"] == 0.5
    assert agencies[None]["name"] == "Tổng cộng"
    # The first action on ticket 1 came an hour after opening, in office hours.
    assert agencies["so-tnmt"]["response_median_h"] == pytest.approx(1.0, rel=0.02)
    categories = rows_by(review["tables"]["categories"], "category")
    assert categories["moi_truong"]["received"] == 6 and categories["giao_thong"]["received"] == 3


def test_small_rows_have_exact_percentiles_as_numpy_computes_them(
    client: httpx.Client, server: RunningServer, keys: dict[str, str], history: dict[int, int]
) -> None:
    review = review_json(client, keys["leader"])
    with psycopg.connect(server.db_url) as conn:
        tickets = conn.execute(
            """SELECT agency, category, response_working_s, resolution_working_s FROM tickets
               WHERE opened_at >= '2025-06-01 00:00+07' AND opened_at < '2025-07-01 00:00+07'"""
        ).fetchall()
    for table, by, index in (("agencies", "agency", 0), ("categories", "category", 1)):
        for code, row in rows_by(review["tables"][table], by).items():
            mine = [t for t in tickets if code is None or t[index] == code]
            assert row["percentiles"] == "exact"
            for column, measure in (("response", 2), ("resolution", 3)):
                values = [t[measure] for t in mine if t[measure] is not None]
                median, p90 = numpy.percentile(values, [50, 90])
                assert row[f"{column}_median_h"] == round(median / 3600, 2), (code, column)
                assert row[f"{column}_p90_h"] == round(p90 / 3600, 2), (code, column)
    sheet = client.get("/review/agencies.csv", params=JUNE, headers=auth(keys["leader"]))
    assert sheet.text.splitlines()[0].endswith(",overdue_now,percentiles")
    page = client.get("/review", params=JUNE, headers=auth(keys["leader"]))
    assert "chính xác" in page.text and "≈" not in page.text.split('id="definitions"')[0]


def test_rows_over_the_exact_limit_say_their_percentiles_are_approximate(
    client: httpx.Client,
    keys: dict[str, str],
    history: dict[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(review_percentiles, "EXACT_GROUP_MAX", 3)  # ca-tp has 3 tickets, so-tnmt 6
    agencies = rows_by(review_json(client, keys["leader"])["tables"]["agencies"], "agency")
    assert agencies["ca-tp"]["percentiles"] == "exact"
    assert agencies["so-tnmt"]["percentiles"] == "approximate"
    assert agencies[None]["percentiles"] == "approximate"
    sheet = client.get("/review/agencies.csv", params=JUNE, headers=auth(keys["leader"]))
    flags = {
        r["agency"]: r["percentiles"]
        for r in csv.DictReader(io.StringIO(sheet.content.decode("utf-8-sig")))
    }
    assert flags == {"": "approximate", "so-tnmt": "approximate", "ca-tp": "exact"}
    page = client.get("/review", params=JUNE, headers=auth(keys["leader"]))
    assert "≈ gần đúng (±2 %)" in page.text and '<td class="num">≈ ' in page.text


def test_an_empty_default_period_moves_to_the_latest_months_with_data(
    client: httpx.Client, clock: HeldClock, keys: dict[str, str], history: dict[int, int]
) -> None:
    clock.set(datetime(2026, 1, 15, 9, 0, tzinfo=HCM))  # Nov 2025 – Jan 2026: nothing
    answer = client.get("/v1/review", headers=auth(keys["leader"]))
    assert answer.status_code == 200, answer.text
    period = answer.json()["period"]
    assert (period["since"], period["until"]) == ("2025-05", "2025-07")
    assert "11/2025 – 01/2026" in period["note"] and "05/2025 – 07/2025" in period["note"]
    assert rows_by(answer.json()["tables"]["agencies"], "agency")[None]["received"] == 10
    page = client.get("/review", headers=auth(keys["leader"]))
    assert 'role="status"' in page.text and "05/2025 – 07/2025" in page.text
    assert 'value="2025-05"' in page.text
    # A period asked for stays as asked, empty or not.
    asked = review_json(client, keys["leader"], since="2025-11", until="2026-01")
    assert asked["period"]["note"] is None and asked["tables"]["agencies"]["rows"] == []


def test_with_no_data_at_all_the_default_period_says_so(
    client: httpx.Client, keys: dict[str, str]
) -> None:
    period = client.get("/v1/review", headers=auth(keys["leader"])).json()["period"]
    assert period["since"] == "2025-04" and period["until"] == "2025-06"
    assert period["note"].startswith("Chưa có số liệu")


def test_weeks_cover_the_period_and_sum_to_the_total(
    client: httpx.Client, keys: dict[str, str], history: dict[int, int]
) -> None:
    review = review_json(client, keys["leader"])
    weeks = review["tables"]["weeks"]["rows"]
    # Mondays from the week holding 1 June to the week holding 30 June.
    assert weeks[0]["week"] == "2025-05-26" and weeks[-1]["week"] == "2025-06-30"
    assert [w["week"] for w in weeks] == [
        (date(2025, 5, 26) + timedelta(days=7 * n)).isoformat() for n in range(len(weeks))
    ]
    assert sum(w["received"] for w in weeks) == 9
    assert rows_by(review["tables"]["weeks"], "week")["2025-06-02"]["received"] == 9


def test_filters_choose_the_tickets(
    client: httpx.Client, keys: dict[str, str], history: dict[int, int]
) -> None:
    by_category = review_json(client, keys["leader"], category="giao_thong")
    agencies = rows_by(by_category["tables"]["agencies"], "agency")
    assert set(agencies) == {None, "ca-tp"} and agencies["ca-tp"]["received"] == 3
    by_agency = review_json(client, keys["admin"], agency="so-tnmt")
    categories = rows_by(by_agency["tables"]["categories"], "category")
    assert set(categories) == {None, "moi_truong"} and categories[None]["received"] == 6
    july = review_json(client, keys["leader"], since="2025-07", until="2025-07")
    assert rows_by(july["tables"]["agencies"], "agency")[None]["received"] == 1


def test_later_changes_are_folded_in_as_a_rebuild_would_count_them(
    client: httpx.Client,
    server: RunningServer,
    clock: HeldClock,
    keys: dict[str, str],
    history: dict[int, int],
) -> None:
    before = review_json(client, keys["leader"])
    clock.set(REVIEW_AT + timedelta(hours=1))
    act(client, keys["admin"], history[1], "reopen", reason="người dân báo chưa xử lý xong")
    act(client, keys["admin"], history[5], "transfer", to_agency="ca-tp", reason="sai thẩm quyền")
    act(client, keys["admin"], history[6], "start")
    folded = review_json(client, keys["leader"])
    assert folded != before
    moved = rows_by(folded["tables"]["agencies"], "agency")
    assert moved["so-tnmt"]["received"] == 5 and moved["ca-tp"]["received"] == 4
    assert moved["so-tnmt"]["resolved"] == 3  # ticket 1 reopened
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute("UPDATE review_state SET zone = NULL")  # the next review rebuilds
    rebuilt = review_json(client, keys["leader"])
    assert rebuilt["tables"] == folded["tables"]


# --- dossiers --------------------------------------------------------------------------------


# dossier → (agency, channel, online level)
DOSSIERS = {
    "D1": ("so-tnmt", "online", "full_process"),
    "D2": ("so-tnmt", "online", "partial"),
    "D3": ("so-tnmt", "counter", None),
    "D4": ("ca-tp", "postal", None),
    "D5": ("ca-tp", "counter", None),
    "D6": ("ca-tp", "counter", None),
}


def dossier_event(d: str, n: int, name: str, at: str, **extra: Any) -> dict[str, Any]:
    agency, channel, level = DOSSIERS[d]
    return {
        "kind": "dossier_event",
        "external_id": f"{d}-{n}",
        "dossier_id": d,
        "procedure_code": "1.001612",
        "agency": agency,
        "event": name,
        "at": f"{at}:00+07:00",
        "channel": channel,
        "online_level": level,
        **extra,
    }


def appointment(at: str) -> dict[str, str]:
    return {"appointment_at": f"{at}:00+07:00"}


def dossier_events() -> list[dict[str, Any]]:
    return [
        dossier_event(
            "D1",
            1,
            "accepted",
            "2025-06-02T08:00",
            digitised=True,
            **appointment("2025-06-04T17:00"),
        ),
        dossier_event("D1", 2, "fee_requested", "2025-06-02T10:00"),
        dossier_event("D1", 3, "fee_paid", "2025-06-02T14:00", paid_online=True),
        dossier_event("D1", 4, "result_returned", "2025-06-03T10:00"),
        dossier_event("D2", 1, "accepted", "2025-06-02T09:00", **appointment("2025-06-03T17:00")),
        dossier_event("D2", 2, "result_returned", "2025-06-03T16:00"),
        dossier_event(
            "D3",
            1,
            "accepted",
            "2025-06-03T08:00",
            digitised=True,
            **appointment("2025-06-04T17:00"),
        ),
        dossier_event("D3", 2, "fee_requested", "2025-06-03T09:00"),
        dossier_event("D3", 3, "fee_paid", "2025-06-03T10:00"),
        dossier_event("D3", 4, "result_returned", "2025-06-06T09:00"),
        dossier_event("D4", 1, "accepted", "2025-06-05T08:00", **appointment("2025-06-06T17:00")),
        dossier_event("D4", 2, "in_processing", "2025-06-05T09:00"),
        dossier_event("D5", 1, "registered", "2025-06-05T08:00"),
        dossier_event("D5", 2, "refused", "2025-06-05T09:00"),
        dossier_event("D6", 1, "accepted", "2025-05-30T08:00", **appointment("2025-06-03T17:00")),
        dossier_event("D6", 2, "result_returned", "2025-06-02T15:00"),
    ]


def test_dossier_indicators_from_events_posted_through_the_api(
    client: httpx.Client, server: RunningServer, clock: HeldClock, keys: dict[str, str]
) -> None:
    clock.set(REVIEW_AT)
    post_batch(client, keys["source"], dossier_events())  # one batch, several dossiers
    table = review_json(client, keys["leader"])["tables"]["dossiers"]
    rows = rows_by(table, "agency")
    province = rows[None]
    assert province["name"] == "Toàn tỉnh"
    # Received in June: D1–D4 (D5 was refused, D6 accepted in May).
    assert province["received"] == 4
    assert province["online"] == 2 and province["online_rate"] == 0.5
    assert province["partial_rate"] == 0.25 and province["full_process_rate"] == 0.25
    assert province["with_fee"] == 2 and province["online_payment_rate"] == 0.5
    assert province["digitised_rate"] == 0.5
    # Finished in June with a result: D1, D2, D3 and D6.
    with psycopg.connect(server.db_url) as conn:
        folded: dict[str, tuple[str, float]] = dict(
            conn.execute(
                "SELECT dossier_id, (result, used_working_s) FROM dossiers"
                " WHERE dossier_id IN ('D1', 'D2', 'D3', 'D6')"
            ).fetchall()
        )
    results = [r for r, _ in folded.values()]
    assert province["finished"] == 4
    assert sorted(results) == ["early", "early", "late", "on_time"]
    assert province["early_rate"] == 0.5 and province["late_rate"] == 0.25
    assert province["on_time_rate"] == 0.75
    mean_days = statistics.mean(float(u) for _, u in folded.values()) / (7.5 * 3600)
    assert province["avg_processing_days"] == round(mean_days, 2)
    assert province["overdue_now"] == 1  # D4: in processing, its appointment passed
    assert rows["so-tnmt"]["received"] == 3 and rows["ca-tp"]["received"] == 1
    assert rows["ca-tp"]["finished"] == 1 and rows["ca-tp"]["on_time_rate"] == 1.0
    page = client.get("/review", params=JUNE, headers=auth(keys["leader"]))
    assert 'data-chart="dossiers"' in page.text and "Trực tuyến toàn trình" in page.text


def test_dossier_changes_after_a_review_are_folded_in_as_a_rebuild_would_count_them(
    client: httpx.Client, server: RunningServer, clock: HeldClock, keys: dict[str, str]
) -> None:
    clock.set(REVIEW_AT)
    events = dossier_events()
    first = [e for e in events if e["event"] in ("accepted", "registered")]
    post_batch(client, keys["source"], first)
    before = rows_by(review_json(client, keys["leader"])["tables"]["dossiers"], "agency")
    assert before[None]["received"] == 4 and before[None]["finished"] == 0
    assert before[None]["with_fee"] == 0
    post_batch(client, keys["source"], [e for e in events if e not in first])
    folded = review_json(client, keys["leader"])["tables"]["dossiers"]
    province = rows_by(folded, "agency")[None]
    assert province["received"] == 4 and province["with_fee"] == 2
    assert province["finished"] == 4 and province["on_time_rate"] == 0.75
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute("UPDATE review_state SET zone = NULL")  # the next review rebuilds
    assert review_json(client, keys["leader"])["tables"]["dossiers"] == folded


# --- access, CSV, errors ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "agency", "source"])
def test_only_leaders_and_admins_see_the_review(
    client: httpx.Client, keys: dict[str, str], role: str
) -> None:
    for path in ("/v1/review", "/review/agencies.csv"):
        answer = client.get(path, headers=auth(keys[role]))
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"
    page = client.get("/review", headers=auth(keys[role]))
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")


def test_without_a_key_the_api_says_401_and_the_page_asks_to_log_in(
    client: httpx.Client, keys: dict[str, str]
) -> None:
    answer = client.get("/v1/review")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"
    page = client.get("/review?since=2025-06")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/review%3Fsince%3D2025-06"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2025-13"}, "since"),
        ({"since": "2025-06-01"}, "since"),
        ({"since": "2025-07", "until": "2025-06"}, "until"),
        ({"agency": "so-khong-co"}, "agency"),
        ({"category": "bay"}, "category"),
        ({"period": "2025"}, "period"),
        ({"since": "2000-01", "until": "2025-06"}, "since"),
    ],
)
def test_bad_parameters_are_named(
    client: httpx.Client, keys: dict[str, str], params: dict[str, str], field: str
) -> None:
    answer = client.get("/v1/review", params=params, headers=auth(keys["leader"]))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input" and error["details"][0]["field"] == field
    page = client.get("/review", params=params, headers=auth(keys["leader"]))
    assert page.status_code == 422 and 'role="alert"' in page.text


def test_an_unknown_table_is_named(client: httpx.Client, keys: dict[str, str]) -> None:
    answer = client.get("/review/secrets.csv", headers=auth(keys["leader"]))
    assert answer.status_code == 422
    assert "agencies, categories, weeks, dossiers" in answer.json()["error"]["message"]


@pytest.mark.parametrize("table", ["agencies", "categories", "weeks", "dossiers"])
def test_every_table_downloads_as_the_json_shows_it(
    client: httpx.Client, keys: dict[str, str], history: dict[int, int], table: str
) -> None:
    answer = client.get(f"/review/{table}.csv", params=JUNE, headers=auth(keys["leader"]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert f"review-{table}-2025-06-2025-06.csv" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    expected = review_json(client, keys["leader"])["tables"][table]
    assert list(rows[0]) == [c["key"] for c in expected["columns"]] if rows else True
    assert len(rows) == len(expected["rows"])
    for got, want in zip(rows, expected["rows"], strict=True):
        assert got == {k: "" if v is None else str(v) for k, v in want.items()}


# --- the page --------------------------------------------------------------------------------


def test_the_page_draws_charts_and_links_every_table(
    client: httpx.Client, keys: dict[str, str], history: dict[int, int]
) -> None:
    answer = client.get("/review", params=JUNE, headers=auth(keys["leader"]))
    assert answer.status_code == 200, answer.text
    html = answer.text
    for table in ("agencies", "categories", "weeks", "dossiers"):
        assert f'data-table="{table}"' in html
        assert f'href="/review/{table}.csv?since=2025-06&amp;until=2025-06"' in html
    # The weekly trend and the agencies' on-time rates; no dossiers yet, so no dossier chart.
    assert html.count("<svg") == 2
    assert 'data-chart="weeks"' in html and 'data-chart="agencies"' in html
    assert "Sở Tài nguyên và Môi trường" in html and "75,0 %" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_with_nothing_yet_the_tables_are_empty(client: httpx.Client, keys: dict[str, str]) -> None:
    review = review_json(client, keys["leader"])
    assert review["tables"]["agencies"]["rows"] == []
    assert [w["received"] for w in review["tables"]["weeks"]["rows"]] == [0] * 6
    province = review["tables"]["dossiers"]["rows"][0]
    assert province["received"] == 0 and province["online_rate"] is None
    page = client.get("/review", params=JUNE, headers=auth(keys["admin"]))
    assert page.status_code == 200 and "Không có số liệu" in page.text


def test_in_a_browser_the_charts_render_and_a_csv_downloads(
    page: Any, server: RunningServer, keys: dict[str, str], history: dict[int, int]
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, server, keys["leader"])
    page.goto(f"{server.url}/review?since=2025-06&until=2025-06")
    assert page.locator('figure[data-chart="weeks"] rect.bar').count() == 6  # 6 weeks shown
    box = page.locator('figure[data-chart="weeks"] svg').bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert page.locator('table[data-table="agencies"] tbody tr').count() == 3
    with page.expect_download() as waiting:
        page.locator("#categories a[download]").click()
    download = waiting.value
    assert download.suggested_filename == "review-categories-2025-06-2025-06.csv"
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    assert text.startswith("category,name,received,")
    assert not errors


# --- parsing and formatting ------------------------------------------------------------------


def test_the_default_period_is_the_last_three_months() -> None:
    query = parse_query({}, HCM, date(2025, 2, 14), [], [])
    assert (query.first_month, query.last_month) == (date(2024, 12, 1), date(2025, 2, 1))
    assert query.since == datetime(2024, 12, 1, tzinfo=HCM)
    assert query.until == datetime(2025, 3, 1, tzinfo=HCM)


def test_numbers_are_shown_the_vietnamese_way() -> None:
    assert shown(1234567, "count") == "1.234.567"
    assert shown(0.8356, "rate") == "83,6 %"
    assert shown(1234.5, "hours") == "1.234,50"
    assert shown(None, "hours") == "—"


def test_csv_leaves_missing_values_empty() -> None:
    from maps.review.queries import Column, Table

    table = Table(
        "t", "T", (Column("a", "A", "text"), Column("b", "B", "hours")), [{"a": "x", "b": None}]
    )
    assert table_csv(table) == "a,b\r\nx,\r\n"
    assert ReviewQuery(date(2025, 6, 1), date(2025, 8, 1), HCM).params() == {
        "since": "2025-06",
        "until": "2025-08",
    }
