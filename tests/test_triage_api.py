"""Operators' triage over real HTTP: the unrouted and catch-all queues, and the triage moves
(recategorise, move the pin, merge, split, spam / not actionable) with their history and clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

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
