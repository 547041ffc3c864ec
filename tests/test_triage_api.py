"""Operators' triage over real HTTP: the unrouted and catch-all queues, and the triage moves
(recategorise, move the pin, merge, split, spam / not actionable) with their history and clocks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

from ioc.routing.rules import AgencyConfig, ResponsibilityConfig, RuleConfig, apply_config
from ioc.store.jurisdictions import save_boundary_set
from tests.conftest import RunningServer, auth, make_key
from tests.test_routing import WARDS

INSIDE = (107.52, 16.42)  # the west ward, W1
FAR = (107.70, 16.42)  # beyond the nearest-ward distance: unrouted


def recent(hours: float = 1) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


@pytest.fixture
def mapped(server: RunningServer) -> RunningServer:
    """The west/east wards; hepco handles moi_truong, so-xd xay_dung (anywhere); no rule for
    chieu_sang, which goes to the catch-all queue (ioc)."""
    config = ResponsibilityConfig(
        agencies=[
            AgencyConfig(code="hepco", name_vi="Công ty Môi trường đô thị"),
            AgencyConfig(code="so-xd", name_vi="Sở Xây dựng"),
        ],
        rules=[
            RuleConfig(agency="hepco", category="moi_truong"),
            RuleConfig(agency="so-xd", category="xay_dung"),
        ],
    )

    async def load() -> None:
        async with server.platform.pool.connection() as conn:
            await save_boundary_set(conn, WARDS, "wards.geojson")
            await apply_config(conn, config)
        await server.platform.reload_routing(force=True)

    server.run(load())
    return server


@pytest.fixture
def operator_key(server: RunningServer) -> str:
    return make_key(server, "operator")


class Reports:
    """Posting field reports and reading their tickets back."""

    def __init__(self, server: RunningServer, client: httpx.Client) -> None:
        self.server, self.client = server, client
        self.key = make_key(server, "source", source="hue-s")
        self.reader = make_key(server, "operator")

    def post(
        self,
        name: str,
        place: tuple[float, float],
        category: str = "moi_truong",
        at: str | None = None,
    ) -> int:
        event = {
            "kind": "field_report",
            "external_id": name,
            "category": category,
            "description": f"Phản ánh {name}",
            "lon": place[0],
            "lat": place[1],
            "occurred_at": at or recent(),
        }
        answer = self.client.post("/v1/events", json=event, headers=auth(self.key))
        assert answer.status_code == 201, answer.text
        return self.ticket_of(name)

    def ticket_of(self, name: str) -> int:
        with psycopg.connect(self.server.db_url) as conn:
            row = conn.execute(
                "SELECT ticket_id FROM field_reports WHERE external_id = %s", (name,)
            ).fetchone()
        assert row is not None and row[0] is not None
        return int(row[0])

    def report_id(self, name: str) -> int:
        with psycopg.connect(self.server.db_url) as conn:
            row = conn.execute("SELECT id FROM field_reports WHERE external_id = %s", (name,))
            found = row.fetchone()
        assert found is not None
        return int(found[0])

    def ticket(self, ticket: int) -> dict[str, Any]:
        answer = self.client.get(f"/v1/tickets/{ticket}", headers=auth(self.reader))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def history(self, ticket: int) -> list[dict[str, Any]]:
        answer = self.client.get(f"/v1/tickets/{ticket}/history", headers=auth(self.reader))
        assert answer.status_code == 200, answer.text
        return list(answer.json()["events"])

    def listed(self, **params: Any) -> list[int]:
        answer = self.client.get("/v1/tickets", params=params, headers=auth(self.reader))
        assert answer.status_code == 200, answer.text
        return [t["id"] for t in answer.json()["tickets"]]


@pytest.fixture
def reports(mapped: RunningServer, client: httpx.Client) -> Reports:
    return Reports(mapped, client)


def assert_error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code and error["message"]
    return error


# --- the queues ------------------------------------------------------------------------------


def test_the_unrouted_and_catch_all_queues_are_filters(reports: Reports) -> None:
    routed = reports.post("R", INSIDE)
    lost = reports.post("U", FAR)
    unclaimed = reports.post("C", INSIDE, "chieu_sang")
    assert reports.ticket(lost)["agency"] is None
    assert reports.listed(agency="none") == [lost]
    assert reports.listed(agency="catch_all") == [unclaimed]
    assert reports.listed(agency="ioc") == [unclaimed]
    assert reports.listed(agency="hepco") == [routed]
    assert reports.listed(agency="none", category="chieu_sang") == []


def test_an_agency_key_cannot_read_the_unrouted_queue(
    reports: Reports, mapped: RunningServer, client: httpx.Client
) -> None:
    reports.post("U", FAR)
    hepco = make_key(mapped, "agency", agency="hepco")
    answer = client.get("/v1/tickets", params={"agency": "none"}, headers=auth(hepco))
    assert_error(answer, 403, "forbidden")


def test_catch_all_without_a_configured_agency_is_422(settings: Any) -> None:
    from tests.conftest import start_server, stop_server

    thread, running = start_server(settings.model_copy(update={"fallback_agency": ""}))
    try:
        key = make_key(running, "operator")
        with httpx.Client(base_url=running.url, timeout=30) as other:
            answer = other.get("/v1/tickets", params={"agency": "catch_all"}, headers=auth(key))
        error = assert_error(answer, 422, "invalid_input")
        assert "catch-all" in error["message"]
    finally:
        stop_server(thread)


def test_the_openapi_document_names_the_queue_filters(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    parameters = document["paths"]["/v1/tickets"]["get"]["parameters"]
    agency = next(p for p in parameters if p["name"] == "agency")
    assert "`none`" in agency["description"] and "`catch_all`" in agency["description"]


# --- the moves -------------------------------------------------------------------------------


def move(client: httpx.Client, key: str, ticket: int, action: str, **body: Any) -> httpx.Response:
    return client.post(
        f"/v1/tickets/{ticket}/triage", json={"action": action, **body}, headers=auth(key)
    )


def done(client: httpx.Client, key: str, ticket: int, action: str, **body: Any) -> dict[str, Any]:
    answer = move(client, key, ticket, action, **body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def hours(ticket: dict[str, Any]) -> float:
    allowed = datetime.fromisoformat(ticket["deadline_at"]) - datetime.fromisoformat(
        ticket["opened_at"]
    )
    return allowed.total_seconds() / 3600


def test_recategorise_previews_then_reroutes_keeping_the_intake_time(
    reports: Reports, client: httpx.Client, operator_key: str
) -> None:
    ticket = reports.post("C", INSIDE, "giao_thong", at=recent(3))  # no rule: catch-all
    before = reports.ticket(ticket)
    assert before["agency"] == "ioc" and hours(before) == 24
    preview = done(
        client,
        operator_key,
        ticket,
        "recategorise",
        category="xay_dung",
        reason="ảnh là công trình",
        dry_run=True,
    )
    assert preview["dry_run"] is True
    assert (preview["ticket"]["agency"], preview["ticket"]["category"]) == ("so-xd", "xay_dung")
    assert reports.ticket(ticket) == before  # a preview changes nothing
    assert [e["action"] for e in reports.history(ticket)] == ["open"]
    after = done(
        client,
        operator_key,
        ticket,
        "recategorise",
        category="xay_dung",
        reason="ảnh là công trình",
    )["ticket"]
    assert (after["agency"], after["category"], after["state"]) == ("so-xd", "xay_dung", "new")
    assert after["opened_at"] == before["opened_at"]  # the intake time is kept
    assert hours(after) == 120  # the new category's deadline, counted from intake
    assert after["first_response_at"] is None  # triage is not the agency's response
    last = reports.history(ticket)[-1]
    assert (last["action"], last["actor"]) == ("recategorise", "test operator")
    assert (last["from_agency"], last["to_agency"]) == ("ioc", "so-xd")
    assert "giao_thong → xay_dung" in last["note"] and "ảnh là công trình" in last["note"]
    assert reports.listed(agency="catch_all") == []


def test_an_unrouted_report_recategorised_goes_to_the_agency_claiming_it_anywhere(
    reports: Reports, client: httpx.Client, operator_key: str
) -> None:
    ticket = reports.post("U", FAR, "giao_thong")
    after = done(
        client, operator_key, ticket, "recategorise", category="xay_dung", reason="xây dựng"
    )["ticket"]
    assert after["agency"] == "so-xd" and after["routing"]["how"] == "category_rule"
    assert reports.listed(agency="none") == []


def test_moving_the_pin_reroutes_and_keeps_the_clock(
    reports: Reports, client: httpx.Client, operator_key: str
) -> None:
    ticket = reports.post("U", FAR)
    before = reports.ticket(ticket)
    preview = done(
        client,
        operator_key,
        ticket,
        "move_pin",
        lon=INSIDE[0],
        lat=INSIDE[1],
        reason="ghim sai vị trí",
        dry_run=True,
    )
    assert preview["ticket"]["agency"] == "hepco" and reports.ticket(ticket)["agency"] is None
    after = done(
        client,
        operator_key,
        ticket,
        "move_pin",
        lon=INSIDE[0],
        lat=INSIDE[1],
        reason="ghim sai vị trí",
    )["ticket"]
    assert (after["agency"], after["jurisdiction_code"]) == ("hepco", "W1")
    assert (after["lon"], after["lat"]) == INSIDE
    assert after["deadline_at"] == before["deadline_at"]  # same category: the clock is unchanged
    last = reports.history(ticket)[-1]
    assert (last["action"], last["from_agency"], last["to_agency"]) == ("move_pin", None, "hepco")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lon": 107.5, "lat": 91, "reason": "x"}, "lat"),
        ({"lon": -181, "lat": 16, "reason": "x"}, "lon"),
        ({"lat": 16.4, "reason": "x"}, "lon"),
        ({"lon": 107.5, "lat": 16.4, "reason": "  "}, "reason"),
    ],
)
def test_a_bad_pin_is_422_naming_the_field(
    reports: Reports, client: httpx.Client, operator_key: str, body: dict[str, Any], field: str
) -> None:
    ticket = reports.post("U", FAR)
    error = assert_error(
        move(client, operator_key, ticket, "move_pin", **body), 422, "invalid_input"
    )
    assert error["details"][0]["field"] == field
    assert reports.history(ticket)[-1]["action"] == "open"


def test_bad_triage_requests(reports: Reports, client: httpx.Client, operator_key: str) -> None:
    ticket = reports.post("C", INSIDE, "giao_thong")
    unknown = assert_error(
        move(client, operator_key, ticket, "teleport", reason="x"), 422, "invalid_input"
    )
    assert "recategorise" in unknown["message"]
    wrong = move(client, operator_key, ticket, "recategorise", category="khong_co", reason="x")
    assert assert_error(wrong, 422, "invalid_input")["details"][0]["field"] == "category"
    same = move(client, operator_key, ticket, "recategorise", category="giao_thong", reason="x")
    assert_error(same, 409, "conflict")
    nul = move(client, operator_key, ticket, "spam", reason="rác\x00")
    assert assert_error(nul, 422, "invalid_input")["details"][0]["field"] == "reason"
    extra = move(client, operator_key, ticket, "spam", reason="x", colour="red")
    assert_error(extra, 422, "invalid_input")
    garbled = client.post(
        f"/v1/tickets/{ticket}/triage",
        content=b"{not json",
        headers=auth(operator_key) | {"Content-Type": "application/json"},
    )
    assert_error(garbled, 400, "malformed_body")
    assert_error(move(client, operator_key, 999999, "spam", reason="x"), 404, "not_found")


def test_only_operators_and_admins_triage(
    reports: Reports, mapped: RunningServer, client: httpx.Client
) -> None:
    ticket = reports.post("C", INSIDE, "giao_thong")
    for key in (
        make_key(mapped, "agency", agency="ioc"),
        make_key(mapped, "leader"),
        make_key(mapped, "source", source="hue-s"),
    ):
        assert_error(move(client, key, ticket, "spam", reason="x"), 403, "forbidden")
    answer = client.post(f"/v1/tickets/{ticket}/triage", json={"action": "spam", "reason": "x"})
    assert_error(answer, 401, "unauthenticated")
    admin = make_key(mapped, "admin")
    assert done(client, admin, ticket, "spam", reason="quảng cáo")["ticket"]["state"] == "rejected"


def test_spam_and_not_actionable_end_the_ticket_with_the_reason(
    reports: Reports, client: httpx.Client, operator_key: str
) -> None:
    spam = reports.post("S", INSIDE)
    idle = reports.post("N", (107.58, 16.42))
    missing = assert_error(move(client, operator_key, spam, "spam"), 422, "invalid_input")
    assert missing["details"][0]["field"] == "reason"
    after = done(client, operator_key, spam, "spam", reason="tin quảng cáo")["ticket"]
    assert after["state"] == "rejected" and after["closed_at"] is not None
    done(client, operator_key, idle, "not_actionable", reason="không đủ thông tin")
    notes = [(e["action"], e["to_state"], e["note"]) for e in reports.history(idle)][1:]
    assert notes == [("not_actionable", "rejected", "not actionable: không đủ thông tin")]
    again = move(client, operator_key, spam, "not_actionable", reason="x")
    assert "rejected" in assert_error(again, 409, "conflict")["message"]
    assert spam not in reports.listed(state="new")


def test_a_merge_shows_on_both_histories_and_a_split_undoes_it(
    reports: Reports, client: httpx.Client, operator_key: str
) -> None:
    kept = reports.post("A", INSIDE, at=recent(2))
    dup = reports.post("B", (107.53, 16.42), at=recent(1))  # ~1 km away: the distance rule missed
    kept_before = reports.ticket(kept)
    preview = done(
        client, operator_key, dup, "merge", into=kept, reason="cùng một bãi rác", dry_run=True
    )
    assert preview["other"]["report_count"] == 2 and reports.ticket(kept)["report_count"] == 1
    merged = done(client, operator_key, dup, "merge", into=kept, reason="cùng một bãi rác")
    assert merged["ticket"]["state"] == "rejected" and merged["other"]["report_count"] == 2
    assert merged["other"]["deadline_at"] == kept_before["deadline_at"]  # the kept clock stands
    gone, taken = reports.history(dup)[-1], reports.history(kept)[-1]
    assert (gone["action"], gone["to_state"]) == ("merge", "rejected")
    assert f"merged into #{kept}" in gone["note"] and "cùng một bãi rác" in gone["note"]
    assert taken["action"] == "merge_in" and f"#{dup} merged in" in taken["note"]
    listed = client.get(f"/v1/tickets/{kept}/reports", headers=auth(operator_key)).json()
    assert [r["id"] for r in listed["reports"]] == [reports.report_id("A"), reports.report_id("B")]
    assert [r["opened_ticket"] for r in listed["reports"]] == [True, False]
    assert "reporter" not in listed["reports"][0]
    # Wrong merges: into itself, into a closed ticket, into nothing.
    assert_error(
        move(client, operator_key, kept, "merge", into=kept, reason="x"), 422, "invalid_input"
    )
    other = reports.post("C", (107.58, 16.42))
    assert_error(move(client, operator_key, other, "merge", into=dup, reason="x"), 409, "conflict")
    assert_error(
        move(client, operator_key, other, "merge", into=10**9, reason="x"), 422, "invalid_input"
    )
    # The split brings the merged ticket back, with its own clock from its intake.
    back = done(
        client,
        operator_key,
        kept,
        "split",
        report=reports.report_id("B"),
        reason="hai nơi khác nhau",
    )
    assert back["ticket"]["report_count"] == 1
    assert back["other"]["id"] == dup and back["other"]["state"] == "new"
    assert back["other"]["report_count"] == 1 and hours(back["other"]) == 48
    assert reports.ticket_of("B") == dup
    assert [e["action"] for e in reports.history(dup)] == ["open", "merge", "split_from"]
    assert reports.history(kept)[-1]["action"] == "split"


def test_split_takes_a_grouped_duplicate_into_a_new_routed_ticket(
    reports: Reports, client: httpx.Client, operator_key: str
) -> None:
    first = reports.post("A", INSIDE, at=recent(2))
    second = reports.post("B", INSIDE, at=recent(1))  # same place: grouped as a duplicate
    assert first == second and reports.ticket(first)["report_count"] == 2
    opening = assert_error(
        move(client, operator_key, first, "split", report=reports.report_id("A"), reason="x"),
        409,
        "conflict",
    )
    assert "opened" in opening["message"]
    elsewhere = reports.post("C", (107.58, 16.42))
    wrong = move(
        client, operator_key, elsewhere, "split", report=reports.report_id("A"), reason="x"
    )
    assert assert_error(wrong, 422, "invalid_input")["details"][0]["field"] == "report"
    split = done(
        client, operator_key, first, "split", report=reports.report_id("B"), reason="sự việc khác"
    )
    new = split["other"]
    assert new["id"] not in (first, elsewhere) and reports.ticket_of("B") == new["id"]
    assert (new["agency"], new["state"], new["report_count"]) == ("hepco", "new", 1)
    assert hours(new) == 48 and split["ticket"]["report_count"] == 1
    history = reports.history(new["id"])
    assert [(e["action"], e["from_state"], e["to_agency"]) for e in history] == [
        ("split_from", None, "hepco")
    ]


def test_the_agency_feeds_hear_a_ticket_arrive_and_leave(
    reports: Reports, mapped: RunningServer, client: httpx.Client, operator_key: str
) -> None:
    ticket = reports.post("C", INSIDE, "giao_thong")
    ioc, so_xd = (make_key(mapped, "agency", agency=code) for code in ("ioc", "so-xd"))
    url = f"{mapped.ws_url}/v1/tickets/ws"
    with (
        connect(url, additional_headers=auth(ioc), open_timeout=5) as left,
        connect(url, additional_headers=auth(so_xd), open_timeout=5) as arrived,
    ):
        done(client, operator_key, ticket, "recategorise", category="xay_dung", reason="xây dựng")
        heard = json.loads(arrived.recv(timeout=5))
        assert (heard["ticket"], heard["agency"], heard["state"]) == (ticket, "so-xd", "new")
        gone = json.loads(left.recv(timeout=5))
        assert (gone["ticket"], gone["from_agency"]) == (ticket, "ioc")
