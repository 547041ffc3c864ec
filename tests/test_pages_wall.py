"""The wall map and the pages' login, in a real headless chromium against a real server."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import shapely
from folium.plugins import Fullscreen

from ioc.alerts.records import NewAlert, raise_alerts, resolve_alerts
from ioc.errors import ConfigError
from ioc.routing.jurisdictions import BoundarySet, read_boundary_file
from ioc.settings import Settings
from ioc.store.jurisdictions import save_boundary_set
from ioc.tickets.opening import notify
from maps import areas, assets, page_map
from maps.wall.data import Labels
from maps.wall.page import WallPage, render_wall
from tests.conftest import (
    RunningServer,
    auth,
    log_in,
    make_key,
    open_session,
    start_server,
    stop_server,
)

OLD = "2025-08-01T07:45:00+07:00"  # deadlines long past: overdue while open
REPORTER = {"name": "Nguyễn Thị Riêng Tư", "phone": "0912345678"}
LIVE = "document.getElementById('live').dataset.state === 'live'"
LOADED = "document.body.dataset.loaded === 'true'"
# A 1×1 PNG for the tile server the test stands in for.
TILE = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGO4//w9AAVeArYOImrrAAAAAElFTkSuQmCC"
)


def fresh(minutes: float = 1) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def report(n: int, at: str = OLD, lon: float | None = None, **extra: Any) -> dict[str, Any]:
    # A kilometre apart, so no report joins another's ticket as a duplicate.
    return {
        "kind": "field_report",
        "external_id": f"W-{n}",
        "category": "moi_truong",
        "description": f"Rác thải tồn đọng số {n}",
        "lon": lon if lon is not None else 107.50 + n * 0.01,
        "lat": 16.46,
        "occurred_at": at,
        "address": f"{n} Lê Lợi, Huế",
        "reporter": REPORTER,
        **extra,
    }


def cookie(server: RunningServer, key: str) -> dict[str, str]:
    """The header a browser logged in with ``key`` sends: its session, never the key."""
    return {"Cookie": f"ioc_session={open_session(server, key)}"}


def login_token(client: httpx.Client) -> str:
    """Open the login form as a browser does: its token, and the cookie that pairs with it."""
    form = client.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert found is not None and client.cookies.get("ioc_login") == found.group(1)
    return found.group(1)


def submit_login(client: httpx.Client, key: str, target: str = "") -> httpx.Response:
    token = login_token(client)
    return client.post("/login", data={"key": key, "next": target, "csrf_token": token})


def post(client: httpx.Client, key: str, event: dict[str, Any]) -> None:
    answer = client.post("/v1/events", json=event, headers=auth(key))
    assert answer.status_code == 201, answer.text


def ticket_of(server: RunningServer, n: int) -> int:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"W-{n}",)
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No tile server: the map must not ask the internet for anything."""
    return settings.model_copy(update={"map_tiles": "none"})


@pytest.fixture
def operator_key(server: RunningServer) -> str:
    return make_key(server, "operator")


@pytest.fixture
def wall(page: Any, server: RunningServer, operator_key: str) -> Any:
    """The wall page, logged in as an operator, loaded and live."""
    log_in(page, server, operator_key)
    page.goto(f"{server.url}/wall")
    page.wait_for_function(LOADED, timeout=15_000)
    page.wait_for_function(LIVE, timeout=15_000)
    return page


# --- login and access ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "agency", "landing"),
    [
        ("operator", None, "/wall"),
        ("admin", None, "/wall"),
        ("agency", "ioc", "/agencies/ioc"),
        ("leader", None, "/review"),
    ],
)
def test_login_sets_a_strict_httponly_cookie_and_goes_to_the_roles_page(
    server: RunningServer, client: httpx.Client, role: str, agency: str | None, landing: str
) -> None:
    key = make_key(server, role, agency=agency)
    answer = submit_login(client, key)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == landing
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "ioc_session=" in c)
    assert cookie.startswith("ioc_session=") and key not in cookie
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "secure" not in lowered  # plain http here; over https the cookie is Secure
    assert key not in answer.text and all(key not in v for v in answer.headers.values())


def test_the_cookie_authenticates_the_api_like_a_bearer_key(
    server: RunningServer, client: httpx.Client, operator_key: str
) -> None:
    assert client.get("/v1/tickets").status_code == 401
    answer = client.get("/v1/tickets", headers=cookie(server, operator_key))
    assert answer.status_code == 200, answer.text


def test_a_wrong_key_stays_on_the_login_page_with_the_reason(client: httpx.Client) -> None:
    answer = submit_login(client, "ioc_nothing_here", "/wall")
    assert answer.status_code == 401
    assert "ioc_session" not in answer.headers.get("set-cookie", "")
    assert 'role="alert"' in answer.text and 'value="/wall"' in answer.text


@pytest.mark.parametrize("target", ["https://example.org/x", "//example.org/x", "/\\example.org"])
def test_login_follows_next_only_within_the_site(
    server: RunningServer, client: httpx.Client, operator_key: str, target: str
) -> None:
    answer = submit_login(client, operator_key, target)
    assert answer.status_code == 303 and answer.headers["location"] == "/wall"


def test_login_follows_a_local_next(client: httpx.Client, operator_key: str) -> None:
    answer = submit_login(client, operator_key, "/wall?kiosk=1")
    assert answer.status_code == 303 and answer.headers["location"] == "/wall?kiosk=1"


def test_logout_ends_the_session_and_clears_the_cookie(
    server: RunningServer, client: httpx.Client, operator_key: str
) -> None:
    logged_in = cookie(server, operator_key)
    assert client.get("/v1/tickets", headers=logged_in).status_code == 200
    answer = client.post("/logout", headers=logged_in | {"Origin": server.url})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert answer.headers["set-cookie"].startswith('ioc_session="";')
    # The session is over on the server too: a copy of the cookie no longer works.
    assert client.get("/v1/tickets", headers=logged_in).status_code == 401


@pytest.mark.parametrize("path", ["/wall", "/wall?kiosk=1", "/agencies/ioc"])
def test_a_page_without_a_key_redirects_to_login(client: httpx.Client, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=" + path.replace("?", "%3F").replace(
        "=", "%3D"
    )
    form = client.get(answer.headers["location"])
    assert form.status_code == 200 and 'name="key"' in form.text


@pytest.mark.parametrize(
    ("role", "agency"), [("leader", None), ("agency", "ioc"), ("source", None)]
)
def test_the_wall_refuses_other_roles_with_a_403_page(
    server: RunningServer, client: httpx.Client, role: str, agency: str | None
) -> None:
    key = make_key(server, role, agency=agency, source="hue-s" if role == "source" else None)
    answer = client.get("/wall", headers={"Cookie": f"ioc_session={open_session(server, key)}"})
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert "403" in answer.text and role in answer.text
    data = client.get("/v1/wall/snapshot", headers=auth(key))
    assert data.status_code == 403 and data.json()["error"]["code"] == "forbidden"


def test_wall_data_needs_a_key(client: httpx.Client) -> None:
    for path in ("/v1/wall/snapshot", "/v1/wall/changes?since=2025-08-01T00:00:00%2B07:00"):
        answer = client.get(path)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"


# --- assets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/leaflet/leaflet.js",
        "/static/vendor/leaflet/leaflet.css",
        "/static/vendor/leaflet/images/layers.png",
        "/static/vendor/markercluster/leaflet.markercluster.js",
        "/static/vendor/jquery/jquery.min.js",
        "/static/vendor/fontawesome/css/all.min.css",
        "/static/vendor/fontawesome/webfonts/fa-solid-900.woff2",
        "/static/ioc/wall.js",
        "/static/ioc/wall.css",
    ],
)
def test_assets_are_served_by_the_platform(client: httpx.Client, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200 and len(answer.content) > 100
    assert "cache-control" in answer.headers


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/nothing/x.js",
        "/static/vendor/leaflet/../../../../../etc/passwd",
        "/static/vendor/leaflet/%2e%2e/%2e%2e/__init__.py",
        "/static/ioc/missing.js",
    ],
)
def test_unknown_assets_are_404(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 404


# --- data ----------------------------------------------------------------------------------


def test_snapshot_and_changes_carry_tickets_but_never_the_reporter(
    server: RunningServer, client: httpx.Client, source_key: str, operator_key: str
) -> None:
    post(client, source_key, report(1))
    ticket = ticket_of(server, 1)
    snap = client.get("/v1/wall/snapshot", headers=auth(operator_key)).json()
    rows = [dict(zip(snap["ticket_columns"], r, strict=True)) for r in snap["tickets"]]
    assert [(r["id"], r["state"], r["agency"], r["lon"]) for r in rows] == [
        (ticket, "new", "ioc", 107.51)
    ]
    assert rows[0]["deadline_at"] < snap["server_time"]  # opened 2025: long overdue
    answer = client.get(
        "/v1/wall/changes", params={"since": snap["cursor"]}, headers=auth(operator_key)
    )
    assert answer.status_code == 200, answer.text
    changes = answer.json()
    # The cursor overlaps the snapshot: the ticket is sent again (and applied idempotently).
    assert ticket in [r[0] for r in changes["tickets"]] and changes["reload"] is False
    for body in (snap, changes, client.get("/wall", headers=auth(operator_key)).text):
        text = json.dumps(body, ensure_ascii=False)
        assert REPORTER["name"] not in text and REPORTER["phone"] not in text


def test_changes_include_tickets_that_changed_after_the_cursor(
    server: RunningServer, client: httpx.Client, source_key: str, operator_key: str
) -> None:
    cursor = client.get("/v1/wall/snapshot", headers=auth(operator_key)).json()["cursor"]
    post(client, source_key, report(2))
    ticket = ticket_of(server, 2)
    moved = client.post(
        f"/v1/tickets/{ticket}/actions", json={"action": "start"}, headers=auth(operator_key)
    )
    assert moved.status_code == 200, moved.text
    changes = client.get(
        "/v1/wall/changes", params={"since": cursor}, headers=auth(operator_key)
    ).json()
    rows = [dict(zip(changes["ticket_columns"], r, strict=True)) for r in changes["tickets"]]
    assert [(r["id"], r["state"]) for r in rows] == [(ticket, "in_progress")]
    assert rows[0]["version"] > 0


@pytest.mark.parametrize(
    ("since", "field"),
    [(None, "since"), ("yesterday", "since"), ("2025-08-01T07:00:00", "since")],
)
def test_changes_refuse_a_bad_cursor(
    client: httpx.Client, operator_key: str, since: str | None, field: str
) -> None:
    params = {} if since is None else {"since": since}
    answer = client.get("/v1/wall/changes", params=params, headers=auth(operator_key))
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_input" and error["details"][0]["field"] == field


def test_an_old_cursor_asks_the_page_to_reload(client: httpx.Client, operator_key: str) -> None:
    since = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    changes = client.get(
        "/v1/wall/changes", params={"since": since}, headers=auth(operator_key)
    ).json()
    assert changes["reload"] is True and changes["tickets"] == []


# --- the page in a browser -------------------------------------------------------------------


def test_the_wall_loads_with_no_request_leaving_this_machine(
    page: Any, server: RunningServer, client: httpx.Client, source_key: str, operator_key: str
) -> None:
    post(client, source_key, report(3))
    addresses: list[str] = []
    failures: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: addresses.append(r.url))
    page.on("websocket", lambda w: addresses.append(w.url))
    page.on("requestfailed", lambda r: failures.append(r.url))
    page.on("response", lambda r: failures.append(r.url) if r.status >= 400 else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, server, operator_key)
    page.goto(f"{server.url}/wall")
    page.wait_for_function(LOADED, timeout=15_000)
    page.wait_for_function(LIVE, timeout=15_000)
    page.wait_for_load_state("networkidle")
    hosts = {urlsplit(a).hostname for a in addresses}
    assert hosts == {"127.0.0.1"}, addresses
    assert not failures and not errors, (failures, errors)
    assert any("/static/vendor/leaflet/leaflet.js" in a for a in addresses)
    assert any("/v1/wall/ws?after=" in a for a in addresses)  # resumable from the snapshot
    assert page.evaluate("typeof L.markerClusterGroup") == "function"
    stat_is(page, "stat-open", "1")
    assert page.locator(".leaflet-control-layers").count() == 1  # the layer control
    html = page.content()
    assert REPORTER["name"] not in html and REPORTER["phone"] not in html


def test_the_tile_layer_is_the_configured_template(page: Any, settings: Settings) -> None:
    template = "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png"
    thread, server = start_server(settings.model_copy(update={"map_tiles": template}))
    try:
        key = make_key(server, "operator")
        tiles: list[str] = []

        def tile(route: Any) -> None:
            tiles.append(route.request.url)
            route.fulfill(status=200, content_type="image/png", body=base64.b64decode(TILE))

        page.route("http://127.0.0.1:9/tiles/**", tile)
        log_in(page, server, key)
        page.goto(f"{server.url}/wall")
        page.wait_for_function(LOADED, timeout=15_000)
        page.wait_for_function("document.querySelector('.leaflet-tile-loaded') !== null")
        assert tiles and all(urlsplit(t).path.startswith("/tiles/") for t in tiles)
    finally:
        stop_server(thread)


def test_a_posted_ticket_appears_on_the_open_wall_within_a_second(
    wall: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    stat_is(wall, "stat-open", "0")
    post(client, source_key, report(4, at=fresh()))
    ticket = ticket_of(server, 4)
    wall.wait_for_function(
        f"""window.IocWall.ticket({ticket}) !== null
            && document.querySelector('#recent [data-ticket="{ticket}"]') !== null
            && document.getElementById('stat-open').textContent === '1'""",
        timeout=1000,
    )
    shown = wall.evaluate(f"window.IocWall.ticket({ticket})")
    assert (shown["state"], shown["agency"], shown["deadline"]) == ("new", "ioc", "on_track")


def test_the_wall_catches_up_after_the_server_drops_the_socket(
    wall: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    hub = server.platform.hub
    server.run(hub.stop())  # every feed socket is closed; new ones are refused until it is back
    try:
        wall.wait_for_function(
            "document.getElementById('live').dataset.state === 'offline'", timeout=5000
        )
        post(client, source_key, report(5, at=fresh()))  # nobody is listening for this one
        ticket = ticket_of(server, 5)
        assert wall.evaluate(f"window.IocWall.ticket({ticket})") is None
    finally:
        server.run(hub.start())
    wall.wait_for_function(LIVE, timeout=20_000)
    wall.wait_for_function(f"window.IocWall.ticket({ticket}) !== null", timeout=5000)
    stat_is(wall, "stat-open", "1")
    # And the feed works again after the catch-up.
    post(client, source_key, report(6, at=fresh()))
    again = ticket_of(server, 6)
    wall.wait_for_function(f"window.IocWall.ticket({again}) !== null", timeout=1000)


def test_markers_take_the_deadline_state_and_leave_when_closed(
    wall: Any, server: RunningServer, client: httpx.Client, source_key: str, operator_key: str
) -> None:
    post(client, source_key, report(7, at=OLD))
    post(client, source_key, report(8, at=fresh()))
    post(client, source_key, report(9, at=fresh()))
    overdue, on_track, soon = (ticket_of(server, n) for n in (7, 8, 9))

    async def due_soon() -> None:
        # As the SLA engine would: the warning time has come, the deadline not yet.
        async with server.platform.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE tickets SET due_soon_at = now() - interval '1 minute',"
                " deadline_at = now() + interval '1 hour', updated_at = now() WHERE id = %s",
                (soon,),
            )
            await notify(conn, [soon])

    server.run(due_soon())
    states = (
        f"[{overdue}, {on_track}, {soon}].map(id => (window.IocWall.ticket(id) || {{}}).deadline)"
    )
    wall.wait_for_function(
        f"JSON.stringify({states}) === JSON.stringify(['overdue', 'on_track', 'due_soon'])",
        timeout=5000,
    )
    # The counters are redrawn after the markers: wait for them too.
    wall.wait_for_function(
        "document.getElementById('stat-overdue').textContent === '1'"
        " && document.getElementById('stat-due-soon').textContent === '1'",
        timeout=5000,
    )
    colour = wall.evaluate(f"window.IocWall.markerColour({overdue})")
    assert colour == "#c62828"
    for action, extra in (("start", {}), ("resolve", {})):
        answer = client.post(
            f"/v1/tickets/{overdue}/actions",
            json={"action": action, **extra},
            headers=auth(operator_key),
        )
        assert answer.status_code == 200, answer.text
    wall.wait_for_function(f"window.IocWall.ticket({overdue}) === null", timeout=5000)
    wall.wait_for_function(
        "document.getElementById('stat-overdue').textContent === '0'", timeout=5000
    )


@pytest.fixture
def wards(server: RunningServer) -> Iterator[BoundarySet]:
    """Two square wards side by side, in force since 1 July 2025 (routing reloaded)."""
    boundaries = BoundarySet(
        level="ward",
        effective_from=datetime(2025, 7, 1).date(),
        codes=("P-A", "P-B"),
        names=("Phường Thuận Hóa", "Phường Phú Xuân"),
        parent_codes=(None, None),
        geometries=(
            shapely.box(107.50, 16.40, 107.55, 16.50),
            shapely.box(107.55, 16.40, 107.60, 16.50),
        ),
    )

    async def save() -> None:
        async with server.platform.pool.connection() as conn:
            await save_boundary_set(conn, boundaries, "test wards")
        await server.platform.reload_routing(force=True)

    server.run(save())
    yield boundaries


def test_jurisdictions_are_coloured_by_open_and_overdue_tickets(
    wards: BoundarySet,
    page: Any,
    server: RunningServer,
    client: httpx.Client,
    source_key: str,
    operator_key: str,
) -> None:
    post(client, source_key, report(10, at=OLD, lon=107.52))  # in P-A, overdue
    post(client, source_key, report(11, at=fresh(), lon=107.57))  # in P-B, on track
    log_in(page, server, operator_key)
    page.goto(f"{server.url}/wall")
    page.wait_for_function(LOADED, timeout=15_000)
    areas = {code: page.evaluate(f"window.IocWall.area('{code}')") for code in ("P-A", "P-B")}
    assert areas["P-A"] == {
        "name": "Phường Thuận Hóa",
        "fillColor": "#c62828",
        "counts": {"open": 1, "overdue": 1},
    }
    assert areas["P-B"] == {
        "name": "Phường Phú Xuân",
        "fillColor": "#2b6cb0",
        "counts": {"open": 1, "overdue": 0},
    }


def test_sensors_are_coloured_by_congestion_and_alerts_listed_live(
    wall: Any, server: RunningServer, client: httpx.Client, sensors: list[str]
) -> None:
    admin = make_key(server, "admin")
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [
        {
            "kind": "traffic_count",
            "sensor_id": sensor,
            "observed_at": now.isoformat(),
            "interval_s": 300,
            "vehicle_count": 100,
            "avg_speed_kmh": speed,
        }
        for sensor, speed in zip(sensors, (52.0, 31.0, 9.5), strict=True)
    ]
    answer = client.post("/v1/events/batch", json=readings, headers=auth(admin))
    assert answer.status_code == 200, answer.text
    levels = f"{json.dumps(sensors)}.map(id => (window.IocWall.sensor(id) || {{}}).level)"
    wall.wait_for_function(
        f"JSON.stringify({levels}) === JSON.stringify(['free', 'slow', 'jam'])", timeout=5000
    )

    async def congestion() -> list[int]:
        alert = NewAlert(
            subject_kind="sensor",
            subject_id=sensors[0],
            rule="congestion",
            level="warning",
            severity="warning",
            agency="ioc",
            title=f"Ùn tắc bất thường tại {sensors[0]}",
            lon=107.58,
            lat=16.46,
        )
        async with server.platform.pool.connection() as conn, conn.transaction():
            return await raise_alerts(conn, [alert], datetime.now(UTC), 3600)

    [alert] = server.run(congestion())
    wall.wait_for_function(
        f"""document.querySelector('#alerts [data-alert="{alert}"]') !== null
            && window.IocWall.sensor({json.dumps(sensors[0])}).level === 'jam'""",
        timeout=5000,
    )
    assert "Ùn tắc bất thường" in wall.locator(f'#alerts [data-alert="{alert}"]').inner_text()

    async def clear() -> None:
        async with server.platform.pool.connection() as conn, conn.transaction():
            await resolve_alerts(conn, "sensor", [sensors[0]], datetime.now(UTC), "cleared")

    server.run(clear())
    wall.wait_for_function(
        f"""document.querySelector('#alerts [data-alert="{alert}"]') === null
            && window.IocWall.sensor({json.dumps(sensors[0])}).level === 'free'""",
        timeout=5000,
    )


def test_kiosk_mode_is_full_screen_without_controls_and_in_large_type(
    page: Any, server: RunningServer, operator_key: str
) -> None:
    log_in(page, server, operator_key)
    page.goto(f"{server.url}/wall?kiosk=1")
    page.wait_for_function(LOADED, timeout=15_000)
    assert page.evaluate("document.body.classList.contains('kiosk')")
    for control in (".leaflet-control-zoom", ".leaflet-control-layers", ".ioc-nav", "form"):
        assert page.locator(control).count() == 0, control
    size = page.evaluate(
        "parseFloat(getComputedStyle(document.getElementById('stat-open')).fontSize)"
    )
    assert size >= 36
    box = page.evaluate(
        "(() => { const r = document.querySelector('.folium-map').getBoundingClientRect();"
        " return [r.width, r.height, innerWidth, innerHeight]; })()"
    )
    assert box[0] == box[2] and box[1] == box[3]


def test_ten_thousand_open_tickets_are_drawn_in_clusters(
    page: Any, server: RunningServer, operator_key: str
) -> None:
    count = 10_000
    with psycopg.connect(server.db_url) as conn:
        conn.execute(
            """INSERT INTO field_reports (source, external_id, category, description, lon, lat,
                                          occurred_at)
               SELECT 'bulk', 'B-' || n, 'moi_truong', 'Phản ánh ' || n,
                      107.45 + (n %% 100) * 0.003, 16.40 + (n / 100) * 0.002,
                      now() - (n %% 96) * interval '1 hour'
               FROM generate_series(1, %s) AS n""",
            (count,),
        )
        conn.execute(
            """INSERT INTO tickets (report_id, category, state, agency, routing, lon, lat,
                                    opened_at, deadline_at, updated_at)
               SELECT id, category, 'new', 'ioc', '{}', lon, lat, occurred_at,
                      occurred_at + interval '48 hours', now()
               FROM field_reports WHERE source = 'bulk'"""
        )
    snapshot = httpx.get(f"{server.url}/v1/wall/snapshot", headers=auth(operator_key), timeout=30)
    assert len(snapshot.json()["tickets"]) == count
    assert len(snapshot.content) < 2_000_000  # compact rows, not map objects
    log_in(page, server, operator_key)
    page.goto(f"{server.url}/wall")
    page.wait_for_function(LOADED, timeout=60_000)
    assert page.evaluate("window.IocWall.openCount") == count
    page.wait_for_function("document.querySelectorAll('.ioc-cluster').length > 0", timeout=30_000)
    # Clustered: the map's DOM holds a few hundred cluster icons at most, not 10,000 markers.
    shown = page.evaluate("document.querySelectorAll('.leaflet-marker-icon').length")
    assert 0 < shown < 500
    overdue = int(page.locator("#stat-overdue").inner_text().replace(".", ""))
    assert 0 < overdue < count


def test_a_folium_element_that_would_load_from_a_cdn_is_refused() -> None:
    fmap = page_map.base_map("none", areas.DEFAULT_BOUNDS)
    Fullscreen().add_to(fmap)  # its plug-in is not among the files the platform serves
    with pytest.raises(ConfigError, match="Fullscreen would load"):
        page_map.render(fmap, title="x", css=[], scripts=[], body="", entry="f", config={})


def test_every_vendor_file_the_pages_name_is_installed() -> None:
    assets.check_installed()
    for name, address in assets.LOCAL.items():
        assert address.startswith("/static/vendor/"), name


HUE_WARDS = Path(__file__).parents[2] / "shared" / "data" / "vn" / "hue_wards_2025.geojson"


@pytest.mark.skipif(not HUE_WARDS.exists(), reason="the shared Huế ward boundaries are absent")
def test_the_wall_draws_hues_forty_wards_simplified() -> None:
    wards = read_boundary_file(HUE_WARDS, "ward", date(2025, 7, 1)).boundaries
    page = render_wall(
        WallPage(
            tiles="none",
            boundaries=wards,
            labels=Labels({}, {}),
            kiosk=True,
            due_soon_fraction=0.75,
            who="",
        )
    )
    drawn = areas.geojson(wards)["features"]
    assert len(drawn) == 40 and all(f["properties"]["code"] for f in drawn)
    assert len(page) < 1_000_000
    (south, west), (north, east) = areas.bounds(wards)
    assert 15.9 < south < north < 16.8 and 107.0 < west < east < 108.3


def stat_is(page: Any, name: str, value: str) -> None:
    """Wait for a counter of the panel: they are redrawn on the next animation frame."""
    page.wait_for_function(
        f"document.getElementById('{name}').textContent === '{value}'", timeout=5000
    )
