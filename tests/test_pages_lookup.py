"""The citizens' public lookup over real HTTP and in a real chromium: a report's code comes back
when it is sent, shows state, deadline and history with no personal data and no officials'
names; unknown and hidden codes answer alike; the allowance per address ends in 429."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from ioc.settings import Settings
from ioc.store.users import principal_of
from ioc.tickets.actions import act
from ioc.tickets.states import Action
from tests.conftest import RunningServer, auth, make_key, make_user
from tests.test_sla import dossier_event, post_reports
from tests.test_triage_api import INSIDE, mapped, recent

__all__ = ["mapped"]

REPORTER = {"name": "Lê Thị Mai", "phone": "0905123456", "email": "mai@example.vn"}
DESCRIPTION = "Rác trước nhà bà Lê Thị Mai, số 12 Kiệt 5"
ADDRESS = "12 Kiệt 5 Nguyễn Trãi"
OFFICIAL = ("hepco.lan", "Nguyễn Thị Lan")
PERSONAL = [*REPORTER.values(), DESCRIPTION, ADDRESS, *OFFICIAL, "Phạm Văn Tú"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"map_tiles": "none", "lookup_burst": 12})


def send(client: httpx.Client, key: str, name: str, category: str = "moi_truong") -> str:
    event = {
        "kind": "field_report",
        "external_id": name,
        "category": category,
        "description": DESCRIPTION,
        "address": ADDRESS,
        "reporter": REPORTER,
        "lon": INSIDE[0],
        "lat": INSIDE[1],
        "occurred_at": recent(),
    }
    answer = client.post("/v1/events", json=event, headers=auth(key))
    assert answer.status_code == 201, answer.text
    again = client.post("/v1/events", json=event, headers=auth(key))
    assert again.status_code == 200 and again.json()["lookup_code"] == answer.json()["lookup_code"]
    return str(answer.json()["lookup_code"])


def work(server: RunningServer, code: str) -> None:
    """An official of hepco assigns (with a note naming someone), starts and resolves it."""
    user_id = server.run(_user_id(server, OFFICIAL[0]))
    who = principal_of(user_id, OFFICIAL[0], OFFICIAL[1], "agency", "hepco")
    report = int(code.split("-")[1])

    async def moves() -> None:
        platform = server.platform
        async with platform.pool.connection() as conn:
            cur = await conn.execute("SELECT ticket_id FROM field_reports WHERE id = %s", (report,))
            row = await cur.fetchone()
            assert row is not None
            for action in (
                Action("assign", "gọi cho anh Phạm Văn Tú", OFFICIAL[0]),
                Action("start"),
                Action("resolve", "Phạm Văn Tú đã dọn"),
            ):
                await act(conn, who, int(row[0]), action, platform.clock.now(), platform.book)

    server.run(moves())


async def _user_id(server: RunningServer, login: str) -> int:
    async with server.platform.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM users WHERE login = %s", (login,))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


def look(client: httpx.Client, code: str) -> httpx.Response:
    return client.get("/v1/public/lookup", params={"code": code})


def test_a_sent_report_is_looked_up_by_its_code_without_personal_data(
    mapped: RunningServer, client: httpx.Client
) -> None:
    key = make_key(mapped, "source", source="hue-s")
    make_user(mapped, OFFICIAL[0], OFFICIAL[1], agency="hepco")
    code = send(client, key, "r-1")
    work(mapped, code)
    answer = look(client, code)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["kind"] == "field_report" and found["code"] == code
    assert (found["state"], found["state_label"]) == ("resolved", "Đã xử lý xong")
    assert found["agency"] == "Công ty Môi trường đô thị"
    assert found["subject"] == "Môi trường, rác thải"
    assert found["result"] in ("early", "on_time") and found["result_label"]
    deadline = datetime.fromisoformat(found["deadline_at"])
    assert deadline.utcoffset() is not None and deadline.utcoffset().total_seconds() == 7 * 3600
    assert found["time_zone"] == "Asia/Ho_Chi_Minh"
    steps = [(s["state"], s["label"]) for s in found["history"]]
    assert steps == [
        ("new", "Mới tiếp nhận"),
        ("assigned", "Đã giao cán bộ xử lý"),
        ("in_progress", "Đang xử lý"),
        ("resolved", "Đã xử lý xong"),
    ]
    assert found["history"][0]["agency"] == "Công ty Môi trường đô thị"
    text = json.dumps(found, ensure_ascii=False)
    leaked = [p for p in PERSONAL if p in text]
    assert not leaked, f"the public answer shows {leaked}"
    # Lower case and surrounding blanks are forgiven.
    assert look(client, f"  {code.lower()} ").json()["code"] == code


def test_unknown_and_hidden_codes_answer_exactly_alike(
    mapped: RunningServer, client: httpx.Client
) -> None:
    key = make_key(mapped, "source", source="hue-s")
    code = send(client, key, "r-2")
    hidden = send(client, key, "r-3", category="an_ninh_trat_tu")  # kept confidential
    assert look(client, hidden.replace("PA-", "pa-")).status_code == 404
    report = code.split("-")[1]
    wrong_secret = f"PA-{report}-{'0' * 8 if not code.endswith('0' * 8) else '1' * 8}"
    answers = [
        look(client, c)
        for c in (
            wrong_secret,  # exists, but the code is not the citizen's
            hidden,
            "PA-999999-ABCDEF12",  # no such report
            "000.00.17.H57-260101-9999",  # no such dossier
        )
    ]

    def seen(answer: httpx.Response) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        headers = tuple(sorted((k, v) for k, v in answer.headers.items() if k != "date"))
        return answer.status_code, answer.content, headers

    assert {seen(a) for a in answers} == {seen(answers[0])}
    assert answers[0].status_code == 404
    assert answers[0].json()["error"]["code"] == "not_found"


def test_a_dossier_is_looked_up_by_its_receipt_code(
    server: RunningServer, client: httpx.Client
) -> None:
    key = make_key(server, "source", source="motcua")
    dossier = "000.00.17.H57-260105-0001"
    post_reports(
        client,
        key,
        [
            dossier_event(dossier, 1, "registered", "2026-01-05T08:30:00+07:00"),
            dossier_event(
                dossier,
                2,
                "accepted",
                "2026-01-05T09:00:00+07:00",
                appointment_at="2026-01-09T17:00:00+07:00",
            ),
            dossier_event(dossier, 3, "result_returned", "2026-01-08T15:00:00+07:00"),
        ],
    )
    found = look(client, dossier).json()
    assert found["kind"] == "dossier" and found["state_label"] == "Đã trả kết quả"
    assert found["deadline_at"] == "2026-01-09T17:00:00+07:00"
    assert found["result"] == "early" and found["result_label"] == "Trước hạn"
    assert [s["state"] for s in found["history"]] == ["registered", "accepted", "result_returned"]


def test_open311_tells_the_citizen_the_code(mapped: RunningServer, client: httpx.Client) -> None:
    key = make_key(mapped, "source", source="hue-s")
    form = {
        "api_key": key,
        "service_code": "moi_truong",
        "lat": str(INSIDE[1]),
        "long": str(INSIDE[0]),
        "description": "Rác",
    }
    answer = client.post("/open311/v2/requests.json", data=form)
    assert answer.status_code in (200, 201), answer.text
    notice = answer.json()[0]["service_notice"]
    code = notice.split("Mã tra cứu: ")[1].split(" ")[0]
    assert look(client, code).json()["state"] == "new"


def test_lookups_beyond_the_allowance_are_answered_429_with_retry_after(
    server: RunningServer, client: httpx.Client
) -> None:
    answers = [look(client, "PA-1-ABCDEF12") for _ in range(12)]
    assert {a.status_code for a in answers} == {404}
    refused = look(client, "PA-1-ABCDEF12")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
    page = client.get("/lookup", params={"code": "PA-1-ABCDEF12"})  # the page shares it
    assert page.status_code == 429 and "Retry-After" in page.headers


def test_the_lookup_is_documented(server: RunningServer, client: httpx.Client) -> None:
    document: dict[str, Any] = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/public/lookup"]["get"]
    assert {"200", "404", "429"} <= set(operation["responses"])
    assert "security" not in operation


def test_the_page_shows_a_report_and_says_not_found_alike(
    mapped: RunningServer, client: httpx.Client, page: Any
) -> None:
    key = make_key(mapped, "source", source="hue-s")
    make_user(mapped, OFFICIAL[0], OFFICIAL[1], agency="hepco")
    code = send(client, key, "r-4")
    work(mapped, code)
    page.goto(f"{mapped.url}/lookup")
    page.fill("#code", code)
    page.click("#lookup-form button")
    page.wait_for_selector("#status")
    assert page.locator("#status").get_attribute("data-state") == "resolved"
    shown = page.locator("main").inner_text()
    assert "Đã xử lý xong" in shown and "Hạn xử lý" in shown and "Quá trình xử lý" in shown
    assert not [p for p in PERSONAL if p in page.content()]
    for other in ("PA-999999-ABCDEF12", code[:-1] + ("0" if code[-1] != "0" else "1")):
        page.fill("#code", other)
        page.click("#lookup-form button")
        page.wait_for_selector("#not-found")
        assert "Không tìm thấy" in page.locator("#not-found").inner_text()
