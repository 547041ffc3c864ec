"""Photos on field reports, against a running server: upload, checks, storage, serving, links."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from PIL import Image

from ingest.demo_photos import post_with_photo, wants_photo
from ingest.simulator import ProvinceSimulator
from ioc.clock import ManualClock
from ioc.media.store import FolderStore
from ioc.settings import Settings
from tests.conftest import RunningServer, auth, make_key
from tests.media_files import GPS_LAT, GPS_LON, picture

NOW = "2025-08-01T07:45:00+07:00"


def report(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"M-{n}",
        "category": "moi_truong",
        "description": f"Rác thải số {n}",
        "lon": 107.59,
        "lat": 16.46,
        "occurred_at": NOW,
        **extra,
    }


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"media_max_bytes": 200_000, "media_max_pixels": 4_000_000})


def upload(client: httpx.Client, key: str, *files: tuple[str, bytes, str]) -> httpx.Response:
    parts = [("media", (name, data, declared)) for name, data, declared in files]
    return client.post("/v1/media", files=parts, headers=auth(key))


def with_photos(
    client: httpx.Client, key: str, event: dict[str, Any], *files: tuple[str, bytes, str]
) -> httpx.Response:
    parts: list[tuple[str, Any]] = [("event", (None, json.dumps(event), "application/json"))]
    parts += [("media", (name, data, declared)) for name, data, declared in files]
    return client.post("/v1/events", files=parts, headers=auth(key))


def ticket_of(server: RunningServer, external_id: str) -> int:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (external_id,)
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def media_rows(server: RunningServer) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.db_url) as conn:
        return conn.execute(
            "SELECT id, report_id, lon, lat FROM media ORDER BY uploaded_at"
        ).fetchall()


def test_upload_first_strips_exif_keeps_gps_and_links_to_the_report(
    server: RunningServer, client: httpx.Client, source_key: str, admin_key: str
) -> None:
    original = picture("JPEG", gps=True)
    assert b"Test Camera Maker" in original
    answer = upload(client, source_key, ("anh.jpg", original, "image/jpeg"))
    assert answer.status_code == 201, answer.text
    (media,) = answer.json()["media"]
    assert media["lon"] == pytest.approx(GPS_LON, abs=1e-6)
    assert media["lat"] == pytest.approx(GPS_LAT, abs=1e-6)
    assert (media["width"], media["height"]) == (1200, 800)

    posted = client.post(
        "/v1/events", json=report(1, media_ids=[media["id"]]), headers=auth(source_key)
    )
    assert posted.status_code == 201, posted.text
    ticket = client.get(f"/v1/tickets/{ticket_of(server, 'M-1')}", headers=auth(admin_key))
    assert [m["id"] for m in ticket.json()["media"]] == [media["id"]]

    stored = client.get(media["url"], headers=auth(admin_key))
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "image/jpeg"
    assert "private" in stored.headers["cache-control"]
    assert b"Test Camera Maker" not in stored.content and b"secret-software" not in stored.content
    assert not Image.open(io.BytesIO(stored.content)).getexif()
    again = client.get(
        media["url"], headers={**auth(admin_key), "If-None-Match": stored.headers["etag"]}
    )
    assert again.status_code == 304

    preview = client.get(media["preview_url"], headers=auth(admin_key))
    assert preview.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(preview.content)).size) == 480


@pytest.mark.parametrize(
    ("fmt", "declared", "stored_as"),
    [
        ("PNG", "application/octet-stream", "image/png"),
        ("WEBP", "image/jpeg", "image/webp"),
        ("HEIF", "image/heic", "image/jpeg"),
    ],
)
def test_a_report_posted_with_photos_keeps_them(
    server: RunningServer,
    client: httpx.Client,
    source_key: str,
    admin_key: str,
    fmt: str,
    declared: str,
    stored_as: str,
) -> None:
    answer = with_photos(
        client, source_key, report(2), ("a.bin", picture(fmt), declared), ("b", picture(), "")
    )
    assert answer.status_code == 201, answer.text
    media = client.get(f"/v1/tickets/{ticket_of(server, 'M-2')}", headers=auth(admin_key)).json()[
        "media"
    ]
    assert [m["id"] for m in media] == answer.json()["media"]
    assert [m["content_type"] for m in media] == [stored_as, "image/jpeg"]
    assert client.get(media[0]["url"], headers=auth(admin_key)).headers["content-type"] == stored_as
    # A citizen who sent photos gets the lookup code like one who sent none.
    code = answer.json()["lookup_code"]
    assert client.get("/v1/public/lookup", params={"code": code}).status_code == 200


def test_only_the_tickets_agency_operators_and_admins_see_a_photo(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    answer = with_photos(client, source_key, report(3), ("a.jpg", picture(), "image/jpeg"))
    (media_id,) = answer.json()["media"]
    url = f"/v1/media/{media_id}/preview"
    allowed = [make_key(server, "operator"), make_key(server, "agency", agency="ioc")]
    for key in allowed:
        assert client.get(url, headers=auth(key)).status_code == 200
    with psycopg.connect(server.db_url) as conn:
        conn.execute("INSERT INTO agencies (code, name_vi) VALUES ('so-xd', 'Sở Xây dựng')")
    refused = [
        make_key(server, "agency", agency="so-xd"),
        make_key(server, "leader"),
        source_key,
    ]
    for key in refused:
        failed = client.get(url, headers=auth(key))
        assert failed.status_code == 404, failed.text
        assert set(failed.json()["error"]) == {"code", "message", "details"}
    assert client.get(url).status_code == 401


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html>not a picture</html>", "not an image of an accepted kind"),
        (picture("GIF"), "not an image of an accepted kind"),
        (picture("JPEG")[:300], "cannot be"),
        (picture("PNG", size=(2500, 2000)), "at most 4000000 are accepted"),
    ],
    ids=["text", "gif", "truncated", "too-many-pixels"],
)
def test_what_is_not_an_accepted_image_is_refused_by_its_content(
    server: RunningServer, client: httpx.Client, source_key: str, data: bytes, reason: str
) -> None:
    answer = with_photos(
        client,
        source_key,
        report(4),
        ("good.jpg", picture(), "image/jpeg"),
        ("photo.jpg", data, "image/jpeg"),
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["details"][0]["field"] == "media[1]"
    assert reason in error["details"][0]["reason"]
    assert media_rows(server) == []
    with psycopg.connect(server.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM field_reports").fetchone() == (0,)


def test_an_image_over_the_size_limit_is_a_413_naming_the_part(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    noisy = Image.effect_noise((600, 600), 100).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "PNG")
    assert len(out.getvalue()) > 200_000
    answer = upload(
        client, source_key, ("ok.png", picture("PNG"), ""), ("big.png", out.getvalue(), "")
    )
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["details"][0]["field"] == "media[1]"
    assert media_rows(server) == []


def test_a_refused_report_links_nothing_and_leaves_no_rows(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    answer = with_photos(
        client, source_key, report(5, category="khong_co"), ("a.jpg", picture(), "image/jpeg")
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["field"] == "category"
    assert media_rows(server) == []


def test_a_report_cannot_take_another_sources_or_a_linked_upload(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    other = make_key(server, "source", source="danang-s")
    (theirs,) = upload(client, other, ("a.jpg", picture(), "")).json()["media"]
    refused = client.post(
        "/v1/events", json=report(6, media_ids=[theirs["id"]]), headers=auth(source_key)
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"][0]["field"] == "media_ids"

    (mine,) = upload(client, source_key, ("a.jpg", picture(), "")).json()["media"]
    first = client.post(
        "/v1/events", json=report(7, media_ids=[mine["id"]]), headers=auth(source_key)
    )
    assert first.status_code == 201
    second = client.post(
        "/v1/events", json=report(8, media_ids=[mine["id"]]), headers=auth(source_key)
    )
    assert second.status_code == 422
    with psycopg.connect(server.db_url) as conn:
        stored = conn.execute("SELECT external_id FROM field_reports ORDER BY id").fetchall()
    assert stored == [("M-7",)]


def test_a_repeated_report_keeps_its_first_photos(
    server: RunningServer, client: httpx.Client, source_key: str, admin_key: str
) -> None:
    first = with_photos(client, source_key, report(9), ("a.jpg", picture(), ""))
    repeat = with_photos(client, source_key, report(9), ("b.jpg", picture(colour="blue"), ""))
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert [str(row[0]) for row in media_rows(server)] == first.json()["media"]


def test_upload_needs_multipart_and_an_ingest_key(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    plain = client.post("/v1/media", content=picture(), headers=auth(admin_key))
    assert plain.status_code == 415
    empty = client.post("/v1/media", files={"x": (None, "text")}, headers=auth(admin_key))
    assert empty.status_code == 422
    operator = make_key(server, "operator")
    assert upload(client, operator, ("a.jpg", picture(), "")).status_code == 403


def test_open311_takes_a_photo_and_answers_its_media_url(
    server: RunningServer, client: httpx.Client, source_key: str, admin_key: str
) -> None:
    form = {
        "api_key": source_key,
        "service_code": "moi_truong",
        "lat": "16.46",
        "long": "107.59",
        "description": "Cây đổ",
    }
    created = client.post(
        "/open311/v2/requests.json",
        data=form,
        files={"media": ("cay.jpg", picture(gps=True), "image/jpeg")},
    )
    assert created.status_code == 200, created.text
    request_id = created.json()[0]["service_request_id"]
    found = client.get(f"/open311/v2/requests/{request_id}.json").json()[0]
    assert found["media_url"].startswith(f"{server.url}/v1/media/")
    assert client.get(found["media_url"], headers=auth(admin_key)).status_code == 200

    linked = client.post(
        "/open311/v2/requests.json",
        data={**form, "lat": "16.52", "media_url": "https://example.org/a.jpg"},
    )
    other = linked.json()[0]["service_request_id"]
    assert client.get(f"/open311/v2/requests/{other}.json").json()[0]["media_url"] == (
        "https://example.org/a.jpg"
    )

    bad = client.post(
        "/open311/v2/requests.json", data=form, files={"media": ("x.jpg", b"GIF89a", "image/jpeg")}
    )
    assert bad.status_code == 400
    assert "media[0]" in bad.json()[0]["description"]


def test_prune_deletes_orphaned_uploads_and_their_files_only(
    server: RunningServer, client: httpx.Client, source_key: str, settings: Settings
) -> None:
    (kept,) = upload(client, source_key, ("a.jpg", picture(), "")).json()["media"]
    (orphan,) = upload(client, source_key, ("b.jpg", picture(colour="navy"), "")).json()["media"]
    posted = client.post(
        "/v1/events", json=report(10, media_ids=[kept["id"]]), headers=auth(source_key)
    )
    assert posted.status_code == 201
    store = settings.data_dir / "media"
    assert len([p for p in store.rglob("*") if p.is_file()]) == 4  # two photos, two previews
    env = {"IOC_DATABASE_URL": server.db_url, "IOC_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "media", "prune", "--older-than-hours", "0"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "deleted 1 orphaned uploads and 2 unused files" in done.stdout
    assert [str(row[0]) for row in media_rows(server)] == [kept["id"]]
    admin = make_key(server, "admin")
    assert client.get(kept["url"], headers=auth(admin)).status_code == 200
    assert client.get(orphan["url"], headers=auth(admin)).status_code == 404


def test_the_folder_store_writes_the_same_content_concurrently_as_one_whole_file(
    tmp_path: Path,
) -> None:
    store = FolderStore(tmp_path)
    data = picture("PNG")
    with ThreadPoolExecutor(8) as pool:
        names = set(pool.map(lambda _: store.put(data), range(32)))
    assert len(names) == 1
    (name,) = names
    assert store.get(name) == data
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [name]  # no temporary left
    store.delete(name)
    assert store.get(name) is None


def test_the_demo_posts_some_simulated_reports_with_drawn_photos(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    clock = ManualClock(datetime.now(UTC) - timedelta(hours=1))
    simulator = ProvinceSimulator(clock, seed=5, n_sensors=2, report_rate_per_s=0.05)
    reports = [
        e
        for e in simulator.events_until(clock.now() + timedelta(minutes=50))
        if e["kind"] == "field_report"
    ]
    chosen = [e for e in reports if wants_photo(e)]
    assert 0 < len(chosen) < len(reports)
    key = make_key(server, "source", source="simulator")

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, headers=auth(key)) as http:
            return [await post_with_photo(http, e) for e in chosen[:3]]

    answers = asyncio.run(post_all())
    assert [a.status_code for a in answers] == [201] * len(answers)
    with psycopg.connect(server.db_url) as conn:
        placed = conn.execute(
            "SELECT m.lon - f.lon, m.lat - f.lat FROM media m JOIN field_reports f"
            " ON f.id = m.report_id"
        ).fetchall()
    assert len(placed) == len(answers)
    assert all(abs(dx) < 1e-5 and abs(dy) < 1e-5 for dx, dy in placed)


def test_more_images_than_allowed_at_once_are_refused_before_any_is_stored(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    six = [(f"{n}.png", picture("PNG", size=(40, 30)), "image/png") for n in range(6)]
    answer = upload(client, source_key, *six)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["field"] == "media"
    assert media_rows(server) == []
