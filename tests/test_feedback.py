"""Citizens' ratings: refused before the result, one that counts per report or dossier, the
satisfaction table of the review (JSON, CSV, page), and a reopening that names the rating.

The history of ``tests.test_review`` is reused: its tickets are reported and worked through the
real API at instants the test chooses. R-1..R-4 (moi_truong, so-tnmt) and R-7, R-8
(giao_thong, ca-tp) are resolved; R-5 and R-6 are open; R-9 was rejected.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ioc.events.kinds import satisfaction
from ioc.events.validation import decode_one
from tests import test_review as review
from tests.conftest import RunningServer, auth, log_in
from tests.test_review import (
    HCM,
    JUNE,
    NDJSON,
    REVIEW_AT,
    HeldClock,
    act,
    review_json,
)

# The review tests' fixtures: a server on a held clock, its keys, and the worked tickets.
clock = review.clock
server = review.server
keys = review.keys
history = review.history

RATED_AT = "2025-06-10T10:00:00+07:00"


def feedback(report: str, rating: str | int, at: str = RATED_AT, **extra: Any) -> dict[str, Any]:
    return {"kind": "feedback", "report_id": report, "rating": rating, "rated_at": at, **extra}


def post_lines(client: httpx.Client, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    body = "\n".join(json.dumps(e, ensure_ascii=False) for e in events).encode()
    answer = client.post("/v1/events/batch", content=body, headers=auth(key) | NDJSON)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def satisfaction_rows(
    client: httpx.Client, key: str, **params: str
) -> dict[tuple[str, str, Any], Any]:
    table = review_json(client, key, **params)["tables"]["satisfaction"]
    return {(r["subject"], r["by"], r["code"]): r for r in table["rows"]}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (5, ("satisfied", 5)),
        (4, ("satisfied", 4)),
        (3, ("normal", 3)),
        (2, ("not_satisfied", 2)),
        (1, ("not_satisfied", 1)),
        ("normal", ("normal", None)),
    ],
)
def test_a_score_maps_to_three_words(given: Any, expected: tuple[str, int | None]) -> None:
    assert satisfaction(given) == expected


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (feedback("R-1", 6), "Expected `int` <= 5"),
        (feedback("R-1", "great"), "accepted: satisfied, normal, not_satisfied, 1, 2, 3, 4, 5"),
    ],
)
def test_a_rating_out_of_the_scale_is_refused_by_the_schema(
    event: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Exception, match="rating") as caught:
        decode_one(json.dumps(event).encode())
    assert reason in str(caught.value)


def test_ratings_change_the_satisfaction_figures_and_the_latest_counts(
    client: httpx.Client, server: RunningServer, keys: dict[str, str], history: dict[int, int]
) -> None:
    empty = satisfaction_rows(client, keys["leader"])
    assert empty[("report", "all", None)]["rated"] == 0
    first = post_lines(
        client,
        keys["source"],
        [
            feedback("R-1", 5, comment="Xử lý nhanh, cảm ơn"),
            feedback("R-2", "normal", external_id="FB-2a"),
            feedback("R-3", 2),
            feedback("R-7", "not_satisfied"),
        ],
    )
    assert first["accepted"] == 4 and first["rejected"] == 0
    rows = satisfaction_rows(client, keys["leader"])
    total = rows[("report", "all", None)]
    assert (total["rated"], total["satisfied"], total["normal"], total["not_satisfied"]) == (
        4,
        1,
        1,
        2,
    )
    assert total["satisfied_rate"] == 0.25
    assert rows[("report", "agency", "so-tnmt")]["satisfied_rate"] == round(1 / 3, 4)
    assert rows[("report", "agency", "ca-tp")]["satisfied_rate"] == 0.0
    assert rows[("report", "category", "giao_thong")]["rated"] == 1
    # The citizen rates R-2 again, later: that rating replaces the first. A replay of the
    # first, and an older rating arriving late, change nothing.
    later = post_lines(
        client,
        keys["source"],
        [
            feedback("R-2", 4, at="2025-06-10T11:00:00+07:00", external_id="FB-2b"),
            feedback("R-2", "normal", external_id="FB-2a"),
            feedback("R-2", 1, at="2025-06-10T09:00:00+07:00", external_id="FB-2c"),
        ],
    )
    assert later["accepted"] == 2 and later["duplicates"] == 1
    total = satisfaction_rows(client, keys["leader"])[("report", "all", None)]
    assert (total["rated"], total["satisfied"], total["normal"]) == (4, 2, 0)
    assert total["satisfied_rate"] == 0.5
    with psycopg.connect(server.db_url) as conn:
        kept = conn.execute(
            "SELECT rating, score, external_id FROM ratings WHERE subject_id = 'R-2'"
        ).fetchall()
    assert kept == [("satisfied", 4, "FB-2b")]
    answer = client.get("/review/satisfaction.csv", params=JUNE, headers=auth(keys["leader"]))
    assert answer.status_code == 200
    table = list(csv.DictReader(io.StringIO(answer.text.lstrip("\ufeff"))))
    assert list(table[0]) == [
        "code",
        "name",
        "subject",
        "by",
        "rated",
        "satisfied",
        "normal",
        "not_satisfied",
        "satisfied_rate",
    ]
    province = next(r for r in table if r["subject"] == "report" and r["by"] == "all")
    assert province["rated"] == "4" and province["satisfied_rate"] == "0.5"
    # What the trigger kept is what a rebuild from the ratings counts.
    kept_table = review_json(client, keys["leader"])["tables"]["satisfaction"]
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute("UPDATE review_state SET zone = NULL")
    assert review_json(client, keys["leader"])["tables"]["satisfaction"] == kept_table


def test_ratings_before_the_result_are_refused_each_with_its_reason(
    client: httpx.Client, keys: dict[str, str], history: dict[int, int]
) -> None:
    result = post_lines(
        client,
        keys["source"],
        [
            feedback("R-5", 5),  # in progress
            feedback("R-6", 5),  # new
            feedback("R-9", 1),  # rejected
            feedback("R-404", 5),  # no such report
            feedback("R-1", 5),
        ],
    )
    assert result["accepted"] == 1 and result["rejected"] == 4
    reasons = {e["line"]: e["reason"] for e in result["errors"]}
    assert all(e["field"] == "report_id" for e in result["errors"])
    assert reasons[1] == (
        f"ticket {history[5]} is 'in_progress'; a rating is accepted only after the result"
        " (resolved or closed)"
    )
    assert f"ticket {history[6]} is 'new'" in reasons[2]
    assert f"ticket {history[9]} is 'rejected'" in reasons[3]
    assert reasons[4] == "report 'R-404' of source 'hue-s' is not known"
    single = client.post("/v1/events", json=feedback("R-5", 3), headers=auth(keys["source"]))
    assert single.status_code == 422
    error = single.json()["error"]
    assert error["details"][0]["field"] == "report_id"
    assert "only after the result" in error["message"]


def _dossier(d: str, n: int, name: str, at: str, **extra: Any) -> dict[str, Any]:
    agency, channel = {"D1": ("so-tnmt", "counter"), "D2": ("ca-tp", "kiosk")}.get(
        d, ("ca-tp", "bcci")
    )
    return {
        "kind": "dossier_event",
        "external_id": f"{d}-{n}",
        "dossier_id": d,
        "procedure_code": "1.001612" if d != "D2" else "2.000488",
        "agency": agency,
        "event": name,
        "at": f"{at}:00+07:00",
        "channel": channel,
        **extra,
    }


def test_dossier_ratings_after_the_result_and_the_new_channels(
    client: httpx.Client, server: RunningServer, clock: HeldClock, keys: dict[str, str]
) -> None:
    clock.set(REVIEW_AT)
    due = {"appointment_at": "2025-06-06T17:00:00+07:00"}
    result = post_lines(
        client,
        keys["source"],
        [
            _dossier("D1", 1, "accepted", "2025-06-02T08:00", **due),
            _dossier("D1", 2, "result_returned", "2025-06-03T10:00"),
            # Rated in the same batch as its result: accepted.
            _dossier("D1", 3, "rated", "2025-06-03T11:00", rating=5, comment="Tốt"),
            _dossier("D2", 1, "accepted", "2025-06-02T09:00", **due),
            _dossier("D2", 2, "result_returned", "2025-06-04T10:00"),
            _dossier("D3", 1, "accepted", "2025-06-02T09:00", **due),
            _dossier("D3", 2, "rated", "2025-06-03T11:00", rating="satisfied"),  # no result
            _dossier("D3", 3, "in_processing", "2025-06-03T12:00", rating=4),  # not a rating
        ],
    )
    assert result["accepted"] == 6 and result["rejected"] == 2, result
    reasons = {e["line"]: (e["field"], e["reason"]) for e in result["errors"]}
    assert reasons[7] == (
        "dossier_id",
        "dossier 'D3' is new in this batch, with no result returned; a rating is accepted"
        " only after the result is returned",
    )
    assert reasons[8] == (
        "rating",
        "a rating and its comment belong to a rated event, not 'in_processing'",
    )
    later = post_lines(
        client, keys["source"], [_dossier("D2", 3, "rated", "2025-06-05T08:00", rating=2)]
    )
    assert later["accepted"] == 1
    rows = satisfaction_rows(client, keys["leader"])
    total = rows[("dossier", "all", None)]
    assert (total["rated"], total["satisfied"], total["not_satisfied"]) == (2, 1, 1)
    assert rows[("dossier", "procedure", "1.001612")]["satisfied_rate"] == 1.0
    assert rows[("dossier", "agency", "ca-tp")]["satisfied_rate"] == 0.0
    with psycopg.connect(server.db_url) as conn:
        states = dict(conn.execute("SELECT dossier_id, state FROM dossiers").fetchall())
    assert states == {"D1": "result_returned", "D2": "result_returned", "D3": "accepted"}
    # Kiosk and BCCI dossiers are received, not online.
    dossiers = review_json(client, keys["leader"])["tables"]["dossiers"]["rows"][0]
    assert dossiers["received"] == 3 and dossiers["online"] == 0


def test_online_level_belongs_to_online_dossiers_only(
    client: httpx.Client, clock: HeldClock, keys: dict[str, str]
) -> None:
    clock.set(REVIEW_AT)
    event = _dossier("D2", 1, "accepted", "2025-06-02T09:00", online_level="full_process")
    answer = client.post("/v1/events", json=event, headers=auth(keys["source"]))
    assert answer.status_code == 422
    assert answer.json()["error"]["message"] == (
        "online_level: online_level applies to online dossiers, not 'kiosk'"
    )


def test_reopening_after_a_poor_rating_names_it_and_starts_a_new_clock(
    client: httpx.Client,
    server: RunningServer,
    clock: HeldClock,
    keys: dict[str, str],
    history: dict[int, int],
) -> None:
    ticket = history[1]
    post_lines(client, keys["source"], [feedback("R-1", 1, comment="Chưa sửa xong")])
    clock.set(REVIEW_AT + timedelta(hours=1))
    act(client, keys["operator"], ticket, "reopen", reason="người dân chưa hài lòng")
    seen = client.get(f"/v1/tickets/{ticket}", headers=auth(keys["operator"])).json()
    assert seen["state"] == "reopened"
    reopened_at = clock.now()
    # The new clock: moi_truong allows 48 calendar hours, counted from the reopening.
    deadline = datetime.fromisoformat(seen["deadline_at"])
    assert deadline == reopened_at + timedelta(hours=48)
    lines = client.get(f"/v1/tickets/{ticket}/history", headers=auth(keys["operator"])).json()
    last = lines["events"][-1]
    assert last["action"] == "reopen" and last["to_state"] == "reopened"
    assert last["note"] == (
        "rating: not_satisfied (1/5) at 2025-06-10T10:00:00+07:00; người dân chưa hài lòng"
    )
    assert last["actor"] == "test operator"  # who: the key's label (an official: name and login)
    queue = client.get("/v1/tickets", headers=auth(keys["operator"])).json()
    assert ticket in {t["id"] for t in queue["tickets"]}
    # Reopened, the ticket has no result to rate until it is resolved again.
    refused = client.post(
        "/v1/events",
        json=feedback("R-1", 5, at="2025-06-10T11:30:00+07:00"),
        headers=auth(keys["source"]),
    )
    assert refused.status_code == 422 and "'reopened'" in refused.json()["error"]["message"]
    act(client, keys["admin"], ticket, "resolve")
    again = post_lines(client, keys["source"], [feedback("R-1", 5, at="2025-06-10T11:40:00+07:00")])
    assert again["accepted"] == 1
    row = satisfaction_rows(client, keys["leader"])[("report", "agency", "so-tnmt")]
    assert (row["rated"], row["satisfied"]) == (1, 1)


def test_in_a_browser_the_review_shows_the_satisfaction_figure(
    page: Any,
    client: httpx.Client,
    server: RunningServer,
    keys: dict[str, str],
    history: dict[int, int],
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, server, keys["leader"])
    page.goto(f"{server.url}/review?since=2025-06&until=2025-06")
    cells = page.locator('table[data-table="satisfaction"] tbody tr.total td')
    assert cells.nth(8).inner_text() == "—"  # nobody has rated yet
    post_lines(client, keys["source"], [feedback("R-1", 5), feedback("R-7", 2)])
    page.reload()
    total = page.locator('table[data-table="satisfaction"] tbody tr.total').first
    assert total.locator("td").nth(4).inner_text() == "2"
    assert total.locator("td").nth(8).inner_text() == "50,0 %"
    assert page.locator('figure[data-chart="satisfaction"]').count() == 1
    assert "Tỷ lệ hài lòng" in page.locator("#definitions").inner_text()
    assert not errors


def test_the_demo_rates_about_half_of_the_resolved_tickets(
    client: httpx.Client, server: RunningServer, keys: dict[str, str], history: dict[int, int]
) -> None:
    from psycopg_pool import AsyncConnectionPool

    from ingest.demo_feedback import rate_once

    async def once() -> datetime:
        async with (
            AsyncConnectionPool(server.db_url, min_size=1, max_size=1, open=False) as pool,
            httpx.AsyncClient(
                base_url=server.url, headers=auth(keys["source"]) | NDJSON, timeout=30
            ) as source,
        ):
            return await rate_once(
                pool,
                source,
                "hue-s",
                datetime(2025, 1, 1, tzinfo=HCM),
                random.Random(3),
                REVIEW_AT,
            )

    cursor = asyncio.run(once())
    assert cursor > datetime(2025, 6, 2, tzinfo=HCM)
    with psycopg.connect(server.db_url) as conn:
        rated = conn.execute(
            "SELECT t.state FROM ratings g JOIN tickets t ON t.id = g.ticket_id"
        ).fetchall()
    assert 0 < len(rated) < 6  # six resolved tickets, about half rated
    assert {state for (state,) in rated} == {"resolved"}


def test_a_file_of_ratings_replays_and_a_second_replay_changes_nothing(
    client: httpx.Client,
    server: RunningServer,
    keys: dict[str, str],
    history: dict[int, int],
    tmp_path: Path,
) -> None:
    from ingest.replay import replay_file
    from ingest.replay_files import ReplayOptions

    sheet = tmp_path / "danh_gia.csv"
    sheet.write_text(
        "ma_phan_anh,diem,thoi_gian\nR-1,5,2025-06-10 09:00\nR-2,3,2025-06-10 09:05\n"
        "R-5,1,2025-06-10 09:10\n",
        encoding="utf-8",
    )
    options = ReplayOptions(
        url=server.url,
        key=keys["source"],
        kind="feedback",
        columns={"report_id": "ma_phan_anh", "rating": "diem", "rated_at": "thoi_gian"},
        timezone="Asia/Ho_Chi_Minh",
    )
    first = replay_file(sheet, options, sleep=lambda _: None)
    assert (first.sent, first.accepted, len(first.rejected)) == (3, 2, 1)  # R-5 is still open
    assert "only after the result" in first.rejected[0]
    again = replay_file(sheet, options, sleep=lambda _: None)
    assert (again.accepted, again.duplicates) == (0, 2)
    total = satisfaction_rows(client, keys["leader"])[("report", "all", None)]
    assert (total["rated"], total["satisfied"], total["normal"]) == (2, 1, 1)
