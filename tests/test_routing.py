"""Routing field reports to agencies, through the real ingest path, and the router alone."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import geopandas as gpd
import httpx
import psycopg
import pytest
import shapely

from ioc.routing.jurisdictions import BoundarySet
from ioc.routing.router import Router, Rule
from ioc.routing.rules import AgencyConfig, ResponsibilityConfig, RuleConfig, apply_config
from ioc.store.jurisdictions import save_boundary_set
from tests.conftest import RunningServer, auth
from tests.test_ingest_api import NDJSON, ndjson, report

HCM = ZoneInfo("Asia/Ho_Chi_Minh")

# Two wards side by side (2025 map) and one district covering both (the old map).
WEST = shapely.box(107.50, 16.40, 107.55, 16.45)
EAST = shapely.box(107.55, 16.40, 107.60, 16.45)
WARDS = BoundarySet(
    "ward",
    date(2025, 7, 1),
    ("W2", "W1"),
    ("Phường Đông", "Phường Tây"),
    ("46", "46"),
    (EAST, WEST),
)
DISTRICTS = BoundarySet(
    "district",
    date(2008, 1, 1),
    ("D1",),
    ("Quận cũ",),
    ("46",),
    (shapely.box(107.50, 16.40, 107.60, 16.45),),
)


def routed(server: RunningServer) -> list[dict[str, Any]]:
    with psycopg.connect(server.db_url) as conn:
        rows = conn.execute(
            "SELECT f.external_id, t.id, t.agency, t.jurisdiction_code, t.routing, t.report_count,"
            " t.state, t.deadline_at - t.opened_at FROM field_reports f JOIN tickets t ON t.id = f.ticket_id"
            " ORDER BY f.id"
        ).fetchall()
    keys = ("external_id", "ticket", "agency", "jurisdiction", "why", "reports", "state", "allowed")
    return [dict(zip(keys, row, strict=True)) for row in rows]


@pytest.fixture
def mapped(server: RunningServer) -> RunningServer:
    """Boundaries, agencies and rules loaded, and the running server told to reload."""
    config = ResponsibilityConfig(
        agencies=[
            AgencyConfig(code="hepco", name_vi="Công ty Môi trường đô thị"),
            AgencyConfig(code="ubnd-tay", name_vi="UBND phường Tây"),
        ],
        rules=[
            RuleConfig(agency="hepco", category="moi_truong"),
            RuleConfig(agency="ubnd-tay", category="moi_truong", jurisdiction_code="W1"),
        ],
    )

    async def load() -> None:
        async with server.platform.pool.connection() as conn:
            await save_boundary_set(conn, WARDS, "wards.geojson")
            await save_boundary_set(conn, DISTRICTS, "districts.geojson")
            await apply_config(conn, config)
        await server.platform.reload_routing(force=True)

    server.run(load())
    return server


def post(client: httpx.Client, key: str, *events: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/v1/events/batch", content=ndjson(*events), headers=auth(key) | NDJSON)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_most_specific_rule_wins_and_why_is_recorded(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    post(
        client,
        source_key,
        report("IN-WEST") | {"lon": 107.52, "lat": 16.42},
        report("IN-EAST") | {"lon": 107.58, "lat": 16.42},
        report("OTHER-CAT") | {"lon": 107.58, "lat": 16.43, "category": "chieu_sang"},
    )
    rows = {r["external_id"]: r for r in routed(mapped)}
    assert (rows["IN-WEST"]["agency"], rows["IN-WEST"]["jurisdiction"]) == ("ubnd-tay", "W1")
    assert (rows["IN-EAST"]["agency"], rows["IN-EAST"]["jurisdiction"]) == ("hepco", "W2")
    assert rows["OTHER-CAT"]["agency"] == "ioc"  # no rule: the catch-all operator queue
    why = rows["IN-WEST"]["why"]
    assert why["how"] == "inside" and why["level"] == "ward" and why["rule"] is not None
    assert rows["IN-WEST"]["allowed"].total_seconds() == 48 * 3600  # moi_truong default deadline


def test_border_point_goes_to_one_ward_deterministically(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    post(client, source_key, report("ON-BORDER") | {"lon": 107.55, "lat": 16.42})
    (row,) = routed(mapped)
    assert row["jurisdiction"] == "W1"  # both cover it; the smaller code wins


def test_outside_goes_to_nearest_within_distance_else_unrouted(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    post(
        client,
        source_key,
        report("NEAR") | {"lon": 107.603, "lat": 16.42},  # ~320 m east of the map
        report("FAR") | {"lon": 107.70, "lat": 16.42},
    )
    rows = {r["external_id"]: r for r in routed(mapped)}
    assert rows["NEAR"]["jurisdiction"] == "W2" and rows["NEAR"]["why"]["how"] == "nearest"
    assert 250 < rows["NEAR"]["why"]["distance_m"] < 400
    assert rows["FAR"]["agency"] is None and rows["FAR"]["why"]["queue"] == "unrouted"


def test_old_reports_route_by_the_boundaries_then_in_force(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    post(
        client,
        source_key,
        report("OLD") | {"lon": 107.52, "lat": 16.42, "occurred_at": "2024-03-01T09:00:00"},
        report("NEW")
        | {
            "lon": 107.52,
            "lat": 16.42,
            "occurred_at": "2025-07-02T09:00:00",
            "category": "chieu_sang",
        },
    )
    rows = {r["external_id"]: r for r in routed(mapped)}
    assert rows["OLD"]["jurisdiction"] == "D1" and rows["OLD"]["agency"] == "hepco"
    assert rows["NEW"]["jurisdiction"] == "W1"


def test_nearby_repeat_joins_the_open_ticket(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    post(client, source_key, report("FIRST") | {"lon": 107.52, "lat": 16.42})
    post(
        client,
        source_key,
        report("TWENTY-M-AWAY") | {"lon": 107.5202, "lat": 16.42},
        report("OTHER-CATEGORY") | {"lon": 107.5202, "lat": 16.42, "category": "cay_xanh"},
        report("NEXT-DAY")
        | {"lon": 107.52, "lat": 16.42, "occurred_at": "2025-08-03T09:00:00+07:00"},
    )
    rows = {r["external_id"]: r for r in routed(mapped)}
    assert rows["TWENTY-M-AWAY"]["ticket"] == rows["FIRST"]["ticket"]
    assert rows["FIRST"]["reports"] == 2
    assert rows["OTHER-CATEGORY"]["ticket"] != rows["FIRST"]["ticket"]
    assert rows["NEXT-DAY"]["ticket"] != rows["FIRST"]["ticket"]
    with psycopg.connect(mapped.db_url) as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM ticket_events WHERE ticket_id = %s ORDER BY id",
                (rows["FIRST"]["ticket"],),
            )
        ]
    assert actions == ["open", "attach_report"]


def test_a_repeat_across_a_cell_corner_joins_and_one_beyond_reach_does_not(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    """Open tickets are looked up by cell columns: a repeat a few metres away but in the next
    cell column and row (a diagonal neighbour) or the next row still finds the ticket."""
    post(client, source_key, report("CORNER") | {"lon": 107.52099, "lat": 16.42001})
    post(
        client,
        source_key,
        report("ACROSS") | {"lon": 107.52101, "lat": 16.41999},
        report("BELOW") | {"lon": 107.52097, "lat": 16.41999},
        report("FAR") | {"lon": 107.5206, "lat": 16.4206},
    )
    rows = {r["external_id"]: r for r in routed(mapped)}
    assert rows["ACROSS"]["ticket"] == rows["CORNER"]["ticket"]
    assert rows["BELOW"]["ticket"] == rows["CORNER"]["ticket"]
    assert rows["FAR"]["ticket"] != rows["CORNER"]["ticket"]
    assert rows["CORNER"]["reports"] == 3


def test_duplicates_within_one_batch_share_a_ticket(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    post(
        client,
        source_key,
        *(report(f"SAME-{n}") | {"lon": 107.58 + n * 1e-5, "lat": 16.42} for n in range(5)),
    )
    rows = routed(mapped)
    assert len({r["ticket"] for r in rows}) == 1
    assert rows[0]["reports"] == 5


def test_a_repeated_report_opens_nothing(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    for _ in range(2):
        client.post(
            "/v1/events",
            json=report("ONCE") | {"lon": 107.52, "lat": 16.42},
            headers=auth(source_key),
        )
    assert len(routed(mapped)) == 1


def test_new_reports_are_written_once_and_a_batch_with_a_repeat_the_usual_way(
    mapped: RunningServer, client: httpx.Client, source_key: str
) -> None:
    """A batch of new reports stores each one already pointing at its ticket: the report's row
    is the version written before the ticket (a smaller command id in the same transaction),
    not a rewrite after it. A batch holding a repeat (of a stored report, and of an earlier
    line) is sorted out the usual way; either way every new report is on its ticket."""
    first = post(
        client,
        source_key,
        report("ONE") | {"lon": 107.52, "lat": 16.42},
        report("TWO") | {"lon": 107.58, "lat": 16.42},
        report("TWO-NEARBY") | {"lon": 107.5801, "lat": 16.42},
    )
    assert (first["accepted"], first["duplicates"]) == (3, 0)
    with psycopg.connect(mapped.db_url) as conn:
        order = conn.execute(
            "SELECT f.external_id, f.cmin::text::int < t.cmin::text::int"
            " FROM field_reports f JOIN tickets t ON t.id = f.ticket_id ORDER BY f.id"
        ).fetchall()
    assert order == [("ONE", True), ("TWO", True), ("TWO-NEARBY", True)]
    second = post(
        client,
        source_key,
        report("THREE") | {"lon": 107.53, "lat": 16.42},
        report("ONE") | {"lon": 107.52, "lat": 16.42},
        report("THREE") | {"lon": 107.53, "lat": 16.42},
        report("THREE-NEARBY") | {"lon": 107.5301, "lat": 16.42},
    )
    assert (second["accepted"], second["duplicates"], second["duplicate_lines"]) == (2, 2, [2, 3])
    rows = {r["external_id"]: r for r in routed(mapped)}
    assert len(rows) == 5
    assert rows["TWO-NEARBY"]["ticket"] == rows["TWO"]["ticket"]
    assert rows["THREE-NEARBY"]["ticket"] == rows["THREE"]["ticket"]
    assert rows["THREE"]["reports"] == 2 and rows["ONE"]["reports"] == 1
    assert len({r["ticket"] for r in rows.values()}) == 3


def test_admin_config_round_trip(
    mapped: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    current = client.get("/v1/admin/config", headers=auth(admin_key)).json()
    assert {"hepco", "ubnd-tay", "ioc"} <= {a["code"] for a in current["agencies"]}
    current["rules"] = [{"agency": "nobody"}]
    refused = client.put("/v1/admin/config", json=current, headers=auth(admin_key))
    assert refused.status_code == 422 and "nobody" in refused.json()["error"]["message"]
    current["rules"] = [{"agency": "hepco"}]
    assert client.put("/v1/admin/config", json=current, headers=auth(admin_key)).status_code == 200


def test_router_alone_is_vectorised_and_versioned() -> None:
    router = Router([WARDS, DISTRICTS], [Rule(1, "hepco", category="moi_truong")])
    when = [datetime(2026, 1, 1, tzinfo=HCM), datetime(2020, 1, 1, tzinfo=HCM)]
    decisions = router.route([107.52, 107.52], [16.42, 16.42], ["moi_truong", "khac"], when)
    assert [(d.jurisdiction_code, d.agency) for d in decisions] == [("W1", "hepco"), ("D1", "ioc")]


def test_jurisdictions_cli_imports_a_file(db_url: str, tmp_path: Path) -> None:
    from tests.test_cli import ioc

    path = tmp_path / "wards.geojson"
    gpd.GeoDataFrame(
        {"code": ["W1", "W2"], "name": ["Tây", "Đông"]}, geometry=[WEST, EAST], crs="EPSG:4326"
    ).to_file(path, driver="GeoJSON")
    result = ioc(
        "jurisdictions",
        "import",
        str(path),
        "--level",
        "ward",
        "--effective-from",
        "2025-07-01",
        env={"IOC_DATABASE_URL": db_url},
    )
    assert result.returncode == 0, result.stderr
    assert "imported 2 ward jurisdictions" in result.stdout
