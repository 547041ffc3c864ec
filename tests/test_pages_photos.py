"""A report's photos in a real headless chromium: on the agency console, never on the wall."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ioc.settings import Settings
from tests.conftest import RunningServer, auth, log_in, make_key
from tests.media_files import picture
from tests.test_pages_console import LIVE, LOADED, ago, choose


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Parametrised (indirectly) with IOC_MEDIA_ON_WALL; off by default."""
    on = bool(getattr(request, "param", False))
    return settings.model_copy(update={"map_tiles": "none", "media_on_wall": on})


def post_with_photo(client: httpx.Client, source_key: str, n: int) -> list[str]:
    event = {
        "kind": "field_report",
        "external_id": f"P-{n}",
        "category": "moi_truong",
        "description": f"Rác thải tồn đọng số {n}",
        "lon": 107.59,
        "lat": 16.46,
        "occurred_at": ago(0.1),
    }
    answer = client.post(
        "/v1/events",
        files=[
            ("event", (None, json.dumps(event), "application/json")),
            ("media", ("rac.jpg", picture(gps=True), "image/jpeg")),
        ],
        headers=auth(source_key),
    )
    assert answer.status_code == 201, answer.text
    media: list[str] = answer.json()["media"]
    return media


def test_a_photo_posted_with_a_report_shows_on_the_console_and_opens_whole(
    page: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    official = make_key(server, "agency", agency="ioc")
    log_in(page, server, official)
    page.goto(f"{server.url}/agencies/ioc")
    page.wait_for_function(LIVE, timeout=15_000)
    page.wait_for_function(LOADED, timeout=15_000)
    (media_id,) = post_with_photo(client, source_key, 1)
    row = page.locator("#queue tbody tr[data-ticket]").first
    row.wait_for(timeout=5000)
    choose(page, int(row.get_attribute("data-ticket")))
    thumb = page.locator(f'#photos a[data-media="{media_id}"] img')
    thumb.wait_for(timeout=5000)
    page.wait_for_function(
        "document.querySelector('#photos img').complete"
        " && document.querySelector('#photos img').naturalWidth > 0",
        timeout=5000,
    )
    assert page.evaluate("document.querySelector('#photos img').naturalWidth") == 480
    thumb.click()
    page.wait_for_function(
        "document.querySelector('#photo-view[open] img')?.naturalWidth > 0", timeout=5000
    )
    assert page.evaluate("document.querySelector('#photo-view img').naturalWidth") == 1200


def test_the_wall_never_carries_photos(
    page: Any, server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    operator = make_key(server, "operator")
    (media_id,) = post_with_photo(client, source_key, 2)
    snapshot = client.get("/v1/wall/snapshot", headers=auth(operator))
    changes = client.get("/v1/wall/changes", params={"since": ago(1)}, headers=auth(operator))
    assert snapshot.status_code == changes.status_code == 200
    assert len(snapshot.json()["tickets"]) == 1
    for answer in (snapshot, changes):
        assert "/v1/media" not in answer.text and media_id not in answer.text
    ticket = snapshot.json()["tickets"][0][0]
    open_wall_popup(page, server, operator, ticket)
    assert "/v1/media" not in page.content()
    assert page.locator(".leaflet-popup .ioc-photos").count() == 0


def open_wall_popup(page: Any, server: RunningServer, key: str, ticket: int) -> None:
    log_in(page, server, key)
    page.goto(f"{server.url}/wall")
    page.wait_for_function(LOADED, timeout=15_000)
    page.wait_for_function(f"IocWall.ticket({ticket}) !== null", timeout=5000)
    page.evaluate(f"IocWall.openPopup({ticket})")
    page.locator(".leaflet-popup .ioc-popup").wait_for(timeout=5000)


@pytest.mark.parametrize("settings", [True], indirect=True, ids=["media_on_wall"])
def test_the_operator_may_let_the_wall_show_a_tickets_photos(
    page: Any, server: RunningServer, client: httpx.Client, source_key: str, settings: Settings
) -> None:
    operator = make_key(server, "operator")
    post_with_photo(client, source_key, 3)
    snapshot = client.get("/v1/wall/snapshot", headers=auth(operator))
    assert "/v1/media" not in snapshot.text  # the popup asks the ticket API, when opened
    open_wall_popup(page, server, operator, snapshot.json()["tickets"][0][0])
    page.wait_for_function(
        "document.querySelector('.leaflet-popup .ioc-photos img')?.naturalWidth === 480",
        timeout=5000,
    )
