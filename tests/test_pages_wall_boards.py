"""The wall's boards (dossiers, traffic), its heat layer and its playlist, in a real chromium."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from alerting.traffic import TrafficWatch
from ioc.errors import ConfigError
from ioc.settings import Settings, load_settings
from ioc.store.aggregates import catch_up
from maps.wall.shared import SharedRead
from tests.conftest import RunningServer, auth, log_in, make_key

LIVE = "document.getElementById('live').dataset.state === 'live'"
LOADED = "document.body.dataset.loaded === 'true'"


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def dossier(name: str, n: int, event: str, at: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "dossier_event",
        "external_id": f"{name}-{n}",
        "dossier_id": name,
        "procedure_code": "P-1",
        "agency": extra.pop("agency", "so-tnmt"),
        "event": event,
        "at": at,
        "channel": extra.pop("channel", "counter"),
        **extra,
    }


def post_all(client: httpx.Client, key: str, events: list[dict[str, Any]]) -> None:
    answer = client.post("/v1/events/batch", json=events, headers=auth(key))
    assert answer.status_code in (200, 201, 207), answer.text
    assert answer.json()["accepted"] == len(events), answer.text


def text_of(page: Any, element: str) -> str:
    return str(page.evaluate(f"document.getElementById('{element}').textContent"))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Long steps: the test that watches the rotation shortens them in the page.
    playlist = "province:30,dossiers:30,traffic:30,centre:30"
    return settings.model_copy(update={"map_tiles": "none", "wall_playlist": playlist})


def open_wall(page: Any, server: RunningServer, query: str = "") -> Any:
    log_in(page, server, make_key(server, "operator"))
    page.goto(f"{server.url}/wall{query}")
    page.wait_for_function(LOADED, timeout=15_000)
    page.wait_for_function(LIVE, timeout=15_000)
    return page


@pytest.fixture
def wall(page: Any, server: RunningServer) -> Any:
    return open_wall(page, server)


def reading(sensor: str, at: datetime, vehicles: int = 120) -> dict[str, Any]:
    return {
        "kind": "traffic_count",
        "sensor_id": sensor,
        "observed_at": at.isoformat(),
        "interval_s": 300,
        "vehicle_count": vehicles,
        "avg_speed_kmh": 45.0,
    }


def on_own_connection(server: RunningServer, work: Any) -> Any:
    """Run ``work(conn)`` on an autocommit connection of its own (as upkeep and the watch do)."""

    async def run() -> Any:
        async with await psycopg.AsyncConnection.connect(server.db_url, autocommit=True) as conn:
            return await work(conn)

    return server.run(run())


def test_a_dossier_event_changes_the_dossier_board_within_a_second(
    wall: Any, client: httpx.Client, source_key: str
) -> None:
    assert text_of(wall, "dossier-received") == "0"
    assert text_of(wall, "dossier-overdue") == "0"
    post_all(
        client,
        source_key,
        [
            dossier("HS-T1", 1, "accepted", ago(minutes=5), channel="counter"),
            # Accepted ten days ago with an appointment three days ago: overdue now.
            dossier(
                "HS-T2",
                1,
                "accepted",
                ago(days=10),
                agency="ubnd-phu-xuan",
                appointment_at=ago(days=3),
            ),
        ],
    )
    wall.wait_for_function(
        """document.getElementById('dossier-received').textContent === '1'
           && document.getElementById('dossier-overdue').textContent === '1'""",
        timeout=1000,
    )
    assert text_of(wall, "dossier-processing") == "2"
    channels = wall.evaluate(
        "[...document.querySelectorAll('#dossier-channels li')].map(li => li.dataset.channel)"
    )
    assert channels == ["counter"]
    assert "Bộ phận một cửa" in text_of(wall, "dossier-channels")
    agencies = wall.evaluate(
        "[...document.querySelectorAll('#dossier-agencies li')].map(li => li.dataset.agency)"
    )
    assert agencies == ["ubnd-phu-xuan"]
    # The result returned today, two days before the appointment: early, so on time.
    post_all(
        client,
        source_key,
        [dossier("HS-T1", 2, "result_returned", ago(minutes=1), appointment_at=ago(days=-2))],
    )
    wall.wait_for_function(
        "document.getElementById('dossier-returned').textContent === '1'", timeout=1000
    )
    assert text_of(wall, "dossier-on-time-today") == "100 %"
    assert text_of(wall, "dossier-processing") == "1"


def test_the_dossier_board_catches_up_after_the_feed_drops(
    wall: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    hub = server.platform.hub
    server.run(hub.stop())
    try:
        wall.wait_for_function(
            "document.getElementById('live').dataset.state === 'offline'", timeout=5000
        )
        post_all(client, source_key, [dossier("HS-C1", 1, "accepted", ago(minutes=2))])
        assert text_of(wall, "dossier-received") == "0"
    finally:
        server.run(hub.start())
    wall.wait_for_function(LIVE, timeout=20_000)
    wall.wait_for_function(
        "document.getElementById('dossier-received').textContent === '1'", timeout=5000
    )


def test_the_snapshot_carries_the_dossier_board(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    post_all(
        client,
        source_key,
        [
            dossier("HS-S1", 1, "accepted", ago(minutes=3), channel="postal"),
            dossier("HS-S2", 1, "registered", ago(minutes=3)),  # not accepted: not received
        ],
    )
    key = make_key(server, "operator")
    board = client.get("/v1/wall/snapshot", headers=auth(key)).json()["dossiers"]
    assert board["received_today"] == 1 and board["channels"] == {"postal": 1}
    assert board["in_processing"] == 1 and board["overdue"] == 0
    assert board["on_time_today"] is None and board["top_overdue"] == []


def test_the_traffic_board_shows_a_silent_sensor_live_and_charts_today_against_its_weekday(
    page: Any, server: RunningServer, client: httpx.Client, admin_key: str, sensors: list[str]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    quiet, *talking = sensors
    readings = [reading(quiet, now - timedelta(minutes=70))]
    readings += [reading(s, now - timedelta(minutes=1)) for s in talking]
    readings += [reading(s, now - timedelta(days=7), 90) for s in talking]
    answer = client.post("/v1/events/batch", json=readings, headers=auth(admin_key))
    assert answer.status_code == 200 and answer.json()["accepted"] == len(readings), answer.text
    on_own_connection(server, lambda conn: catch_up(conn, server.platform.backend, force=True))
    wall = open_wall(page, server)
    assert wall.evaluate("document.querySelectorAll('#traffic-silent [data-sensor]').length") == 0
    points = int(wall.evaluate("document.getElementById('traffic-chart').dataset.points"))
    assert points >= 1
    assert wall.evaluate(
        "document.querySelector('#traffic-chart path.baseline').getAttribute('d')"
    ).startswith("M")

    watch = TrafficWatch(server.platform.settings, lambda: server.platform.desk.router)
    found = on_own_connection(server, lambda conn: watch.check(conn, now))
    assert found.silent == 1
    wall.wait_for_function(
        f"document.querySelector('#traffic-silent [data-sensor=\"{quiet}\"]') !== null",
        timeout=5000,
    )
    assert text_of(wall, "traffic-silent-total") == "1"
    # Silent since its last reading, 70 minutes before the check.
    assert "im lặng 1 giờ" in wall.locator(f'#traffic-silent [data-sensor="{quiet}"]').inner_text()


def field_report(n: int, lon: float, at: str) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"H-{n}",
        "category": "moi_truong",
        "description": f"Rác thải tồn đọng số {n}",
        "lon": lon,
        "lat": 16.46,
        "occurred_at": at,
    }


def test_the_heat_layer_shows_the_last_weeks_reports_from_a_local_script(
    page: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    events = [field_report(1, 107.55, ago(days=2)), field_report(2, 107.60, ago(days=9))]
    post_all(client, source_key, events)  # the second is older than a week: not shown
    scripts: list[str] = []
    page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
    wall = open_wall(page, server)
    assert any(u.endswith("/static/vendor/folium/leaflet_heat.min.js") for u in scripts), scripts
    assert wall.evaluate("document.body.dataset.heatPoints") == "1"
    assert wall.evaluate("document.querySelectorAll('canvas.leaflet-heatmap-layer').length") == 1
    post_all(client, source_key, [field_report(3, 107.65, ago(minutes=1))])
    wall.wait_for_function("document.body.dataset.heatPoints === '2'", timeout=5000)


def test_the_video_wall_rotates_through_its_playlist_without_reloading_or_dropping_the_feed(
    page: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    wall = open_wall(page, server, "?kiosk=1")
    assert wall.evaluate("window.IocWallPlaylist.view") == "province"
    province_zoom = wall.evaluate("window.IocWallPlaylist.zoom")
    wall.evaluate("window.stillTheSamePage = true; window.IocWallPlaylist.every(300)")
    # Each view checked in one evaluation, so the next step cannot slip in between.
    shown = "(id) => getComputedStyle(document.getElementById(id)).display !== 'none'"
    expected = {
        "dossiers": "shown('dossier-board') && !shown('traffic-board')",
        "traffic": "shown('traffic-board') && !shown('dossier-board')",
        "centre": f"window.IocWallPlaylist.zoom > {province_zoom}",
        "province": f"window.IocWallPlaylist.zoom === {province_zoom}",
    }
    for view in ("dossiers", "traffic", "centre", "province", "dossiers"):
        wall.wait_for_function(
            f"""(() => {{ const shown = {shown};
                return window.IocWallPlaylist.view === '{view}' && {expected[view]}; }})()""",
            timeout=5000,
        )
    assert wall.evaluate("window.stillTheSamePage") is True
    assert wall.evaluate(LIVE)
    # The feed kept running all along: a dossier reaches the board while it rotates.
    post_all(client, source_key, [dossier("HS-P1", 1, "accepted", ago(minutes=1))])
    wall.wait_for_function(
        "document.getElementById('dossier-received').textContent === '1'", timeout=1000
    )
    assert wall.evaluate("window.stillTheSamePage") is True


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("wall_playlist", "province:60,lobby:30"),
        ("wall_playlist", "traffic:0"),
        ("wall_playlist", "dossiers"),
        ("wall_centre", "107.585,16.463"),
        ("wall_centre", "16.463,107.585,15"),
    ],
)
def test_a_bad_playlist_or_centre_is_refused_naming_it(setting: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"IOC_{setting.upper()}="):
        load_settings(**{setting: value})


def test_the_playlist_reads_as_views_and_seconds() -> None:
    steps = load_settings(wall_playlist="province:45, traffic:12.5").wall_steps()
    assert steps == [("province", 45.0), ("traffic", 12.5)]
    assert load_settings(wall_playlist="").wall_steps() == []


def test_one_board_read_serves_every_page_that_asks_after_the_same_change(
    server: RunningServer,
) -> None:
    reads: list[int] = []

    async def read(conn: Any) -> int:
        cur = await conn.execute("SELECT pg_sleep(0.05), %s::int", (len(reads),))
        row = await cur.fetchone()
        reads.append(row[1])
        return int(row[1])

    async def pages() -> tuple[list[int], int, int]:
        shared = SharedRead(lambda: server.platform.pool, read)
        moment = time.monotonic()
        leaving = asyncio.create_task(shared.after(moment))
        await asyncio.sleep(0)
        together = asyncio.gather(*(shared.after(moment) for _ in range(5)))
        leaving.cancel()  # a page that leaves does not cancel the others' read
        seen = list(await together)
        again = await shared.after(moment)  # nothing new: the last result
        later = await shared.after(time.monotonic())  # a newer change: read again
        return seen, again, later

    seen, again, later = server.run(pages())
    assert seen == [0] * 5 and again == 0 and later == 1
    assert reads == [0, 1]
