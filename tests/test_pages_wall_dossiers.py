"""The wall's dossier layer, its link to triage, and its feed resuming by number, in chromium."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from ioc.settings import Settings
from maps.wall.data import Labels
from maps.wall.page import WallPage, render_wall
from tests.conftest import RunningServer, auth, make_key
from tests.test_pages_wall_boards import LIVE, LOADED, ago, dossier, open_wall, post_all, text_of

COLOURS = "window.IocCommon.COLOURS"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"map_tiles": "none"})


@pytest.fixture
def wall(page: Any, server: RunningServer) -> Any:
    return open_wall(page, server)


def place_of(page: Any, dossier_id: str) -> Any:
    return page.evaluate(f"window.IocWallDossiers.dossier({dossier_id!r})")


def colour_is(page: Any, dossier_id: str, state: str) -> None:
    page.wait_for_function(
        f"window.IocWallDossiers.markerColour({dossier_id!r}) === {COLOURS}[{state!r}]",
        timeout=1000,
    )


def report(n: int) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"D-{n}",
        "category": "moi_truong",
        "description": f"Rác thải số {n}",
        "lon": 107.50 + n * 0.01,
        "lat": 16.46,
        "occurred_at": ago(minutes=1),
    }


def test_located_dossiers_appear_on_their_layer_coloured_by_deadline(
    wall: Any, client: httpx.Client, source_key: str
) -> None:
    here = {"lon": 107.59, "lat": 16.47}
    post_all(
        client,
        source_key,
        [
            # Accepted just now, due in ten days: on time.
            dossier("HS-M1", 1, "accepted", ago(minutes=5), appointment_at=ago(days=-10), **here),
            # Accepted ten days ago, due in an hour: due soon.
            dossier("HS-M2", 1, "accepted", ago(days=10), appointment_at=ago(hours=-1), **here),
            # Due three days ago: overdue.
            dossier("HS-M3", 1, "accepted", ago(days=10), appointment_at=ago(days=3), **here),
            # No place of its own, nor its agency: not on the map.
            dossier("HS-M4", 1, "accepted", ago(minutes=5)),
        ],
    )
    colour_is(wall, "HS-M1", "on_track")
    colour_is(wall, "HS-M2", "due_soon")
    colour_is(wall, "HS-M3", "overdue")
    shown = place_of(wall, "HS-M3")
    assert (shown["lon"], shown["lat"], shown["agency"]) == (107.59, 16.47, "so-tnmt")
    assert place_of(wall, "HS-M4") is None
    assert wall.evaluate("window.IocWallDossiers.count") == 3
    # The board agrees with the map.
    assert text_of(wall, "dossier-due-soon") == "1" and text_of(wall, "dossier-overdue") == "1"
    # The layer is a cluster of its own in the layer control, named in Vietnamese.
    names = wall.evaluate(
        "[...document.querySelectorAll('.leaflet-control-layers-overlays label')]"
        ".map(l => l.textContent.trim())"
    )
    assert "Hồ sơ TTHC (theo hạn giải quyết)" in names
    assert "Hồ sơ quá hạn" in text_of(wall, "legend")
    # A dossier whose result is returned leaves the map.
    post_all(client, source_key, [dossier("HS-M3", 2, "result_returned", ago(minutes=1))])
    wall.wait_for_function("window.IocWallDossiers.dossier('HS-M3') === null", timeout=1000)


def test_a_notice_too_long_to_name_its_dossiers_brings_the_whole_layer(
    wall: Any, client: httpx.Client, source_key: str
) -> None:
    # Forty ids of 120 characters do not fit in one notice: the feed sends every row instead.
    names = [f"HS-{n:03d}-" + "x" * 113 for n in range(40)]
    here = {"lon": 107.59, "lat": 16.47}
    post_all(
        client, source_key, [dossier(name, 1, "accepted", ago(hours=1), **here) for name in names]
    )
    wall.wait_for_function("window.IocWallDossiers.count === 40", timeout=1000)
    assert place_of(wall, names[-1])["lat"] == 16.47


def test_a_dossier_without_a_place_is_shown_at_its_agencys(
    server: RunningServer, page: Any, client: httpx.Client, source_key: str
) -> None:
    admin = make_key(server, "admin")
    config = {
        "agencies": [
            {"code": "so-tnmt", "name_vi": "Sở Tài nguyên và Môi trường", "lon": 107.6, "lat": 16.4}
        ]
    }
    answer = client.put("/v1/admin/config", json=config, headers=auth(admin))
    assert answer.status_code == 200, answer.text
    assert (
        client.get("/v1/admin/config", headers=auth(admin)).json()["agencies"][-1]["lon"] == 107.6
    )
    wall = open_wall(page, server)
    post_all(client, source_key, [dossier("HS-A1", 1, "accepted", ago(days=10))])
    wall.wait_for_function("window.IocWallDossiers.dossier('HS-A1') !== null", timeout=1000)
    shown = place_of(wall, "HS-A1")
    assert (shown["lon"], shown["lat"]) == (107.6, 16.4)
    # Another wall loading now gets it from the snapshot.
    snapshot = client.get("/v1/wall/snapshot", headers=auth(make_key(server, "operator"))).json()
    rows = [dict(zip(snapshot["place_columns"], r, strict=True)) for r in snapshot["places"]]
    assert [(r["id"], r["lon"], r["lat"]) for r in rows] == [("HS-A1", 107.6, 16.4)]


@pytest.mark.parametrize(
    ("agency", "field"),
    [({"lon": 107.6}, "lat"), ({"lat": 16.4}, "lat"), ({"lon": 190.0, "lat": 16.4}, "lon")],
)
def test_an_agency_place_is_both_coordinates_in_range(
    server: RunningServer, client: httpx.Client, agency: dict[str, float], field: str
) -> None:
    body = {"agencies": [{"code": "so-tnmt", "name_vi": "Sở TN&MT", **agency}]}
    answer = client.put("/v1/admin/config", json=body, headers=auth(make_key(server, "admin")))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input" and field in error["message"]


def test_a_dossier_event_with_half_a_place_is_refused(
    client: httpx.Client, source_key: str
) -> None:
    event = dossier("HS-H1", 1, "accepted", ago(minutes=1), lon=107.6)
    answer = client.post("/v1/events", json=event, headers=auth(source_key))
    assert answer.status_code == 422, answer.text
    assert "give both lon and lat" in answer.json()["error"]["message"]


def test_the_wall_links_operators_to_triage(wall: Any, server: RunningServer) -> None:
    link = wall.locator("#triage-link")
    assert link.text_content() == "Phân loại phiếu"
    link.click()
    wall.wait_for_url(f"{server.url}/triage")


def test_the_triage_link_is_left_out_for_those_who_may_not_triage() -> None:
    page = WallPage(
        tiles="none",
        boundaries=None,
        labels=Labels({}, {}),
        kiosk=False,
        due_soon_fraction=0.75,
        who="x",
        triage=False,
    )
    assert 'id="triage-link"' not in render_wall(page)
    assert 'id="triage-link"' in render_wall(
        WallPage(
            tiles="none",
            boundaries=None,
            labels=Labels({}, {}),
            kiosk=False,
            due_soon_fraction=0.75,
            who="x",
            triage=True,
        )
    )


def ticket_of(server: RunningServer, n: int) -> int:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"D-{n}",)
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def test_the_wall_resumes_from_its_last_notice_after_a_drop_with_nothing_missed(
    wall: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    post_all(client, source_key, [report(1)])
    first = ticket_of(server, 1)
    wall.wait_for_function(f"window.IocWall.ticket({first}) !== null", timeout=1000)
    held = wall.evaluate("window.IocWall.seq")
    catch_ups = wall.evaluate("document.body.dataset.catchUps || '0'")
    hub = server.platform.hub
    server.run(hub.stop())  # every feed socket is dropped; new ones are refused until it is back
    try:
        wall.wait_for_function(
            "document.getElementById('live').dataset.state === 'offline'", timeout=5000
        )
        here = {"lon": 107.58, "lat": 16.45}
        post_all(client, source_key, [report(2), report(3)])
        post_all(client, source_key, [dossier("HS-R1", 1, "accepted", ago(minutes=2), **here)])
    finally:
        server.run(hub.start())
    wall.wait_for_function(LIVE, timeout=20_000)
    missed = [ticket_of(server, 2), ticket_of(server, 3)]
    wall.wait_for_function(
        f"""window.IocWall.ticket({missed[0]}) !== null && window.IocWall.ticket({missed[1]}) !== null
            && window.IocWallDossiers.dossier('HS-R1') !== null
            && document.getElementById('dossier-received').textContent === '1'""",
        timeout=5000,
    )
    # It asked the feed for what followed the last notice it drew, and needed no other catch-up.
    assert wall.evaluate("document.body.dataset.feedAfter") == str(held)
    assert wall.evaluate("document.body.dataset.catchUps || '0'") == catch_ups
    assert wall.evaluate("window.IocWall.seq") > held
    assert wall.evaluate("window.IocWall.openCount") == 3
    # And it is live again.
    post_all(client, source_key, [report(4)])
    wall.wait_for_function(f"window.IocWall.ticket({ticket_of(server, 4)}) !== null", timeout=1000)


def test_a_wall_away_longer_than_the_log_keeps_reloads_its_snapshot(
    wall: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    snapshots = wall.evaluate("document.body.dataset.snapshots")
    hub = server.platform.hub
    server.run(hub.stop())
    try:
        wall.wait_for_function(
            "document.getElementById('live').dataset.state === 'offline'", timeout=5000
        )
        post_all(client, source_key, [report(5)])
        with psycopg.connect(server.db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM live_log")  # pruned: the page's number is no longer kept
            conn.execute("DELETE FROM live_commits")
    finally:
        server.run(hub.start())
    wall.wait_for_function(LIVE, timeout=20_000)
    ticket = ticket_of(server, 5)
    wall.wait_for_function(f"window.IocWall.ticket({ticket}) !== null", timeout=5000)
    wall.wait_for_function(f"document.body.dataset.snapshots !== '{snapshots}'", timeout=5000)
    wall.wait_for_function(LOADED)


def test_the_snapshot_carries_the_feeds_number(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    key = make_key(server, "operator")
    before = client.get("/v1/wall/snapshot", headers=auth(key)).json()["seq"]
    post_all(client, source_key, [report(6)])
    after = client.get("/v1/wall/snapshot", headers=auth(key)).json()["seq"]
    assert after > before
