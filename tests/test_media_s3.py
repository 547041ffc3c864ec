"""Photos in an S3-compatible object store: the store itself, then the platform with it (upload
with a report, shown from the store, prune), against a real S3 server (tests/s3_server.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import urllib3
from minio.error import S3Error
from PIL import Image

from ioc.errors import ConfigError
from ioc.media.s3 import S3Store, connect
from ioc.settings import Settings, load_settings
from tests.conftest import RunningServer, auth, make_key
from tests.media_files import picture
from tests.s3_server import ACCESS_KEY, SECRET_KEY, ObjectStore, object_store
from tests.test_mqtt_tls import certificates

NOW = "2025-08-01T07:45:00+07:00"
BUCKET = "anh-hien-truong"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[ObjectStore]:
    with object_store(tmp_path / "s3") as running:
        running.client().make_bucket(BUCKET)
        yield running


@pytest.fixture
def settings(settings: Settings, s3: ObjectStore) -> Settings:
    return settings.model_copy(
        update={
            "media_max_bytes": 200_000,
            "media_s3_url": s3.url,
            "media_s3_bucket": BUCKET,
            "media_s3_prefix": "ioc/",
            "media_s3_access_key": ACCESS_KEY,
            "media_s3_secret_key": SECRET_KEY,
        }
    )


def store_of(s3: ObjectStore, prefix: str = "ioc/") -> S3Store:
    return connect(
        s3.url,
        BUCKET,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region="us-east-1",
        prefix=prefix,
    )


def objects(s3: ObjectStore) -> list[str]:
    return sorted(o.object_name or "" for o in s3.client().list_objects(BUCKET, recursive=True))


def report(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"S3-{n}",
        "category": "moi_truong",
        "description": f"Rác thải số {n}",
        "lon": 107.59,
        "lat": 16.46,
        "occurred_at": NOW,
        **extra,
    }


def test_the_s3_store_keeps_content_addressed_objects(s3: ObjectStore) -> None:
    store = store_of(s3)
    data = picture("PNG")
    with ThreadPoolExecutor(8) as pool:
        names = set(pool.map(lambda _: store.put(data), range(16)))
    (name,) = names
    assert objects(s3) == [f"ioc/{name[:2]}/{name[2:4]}/{name}"]
    assert store.get(name) == data
    assert list(store.names(0.0)) == [name]
    assert list(store.names(3600.0)) == []  # written just now
    assert store_of(s3, prefix="other/").get(name) is None  # prefixes keep stores apart
    store.delete(name)
    store.delete(name)  # deleting what is gone is no error
    assert store.get(name) is None
    assert objects(s3) == []
    with pytest.raises(ValueError, match="64 hex digits"):
        store.get("../../etc/passwd")
    assert store.check() == f"bucket {BUCKET!r} answers"
    wrong = connect(
        s3.url, "khong-co", access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1"
    )
    with pytest.raises(LookupError, match="does not exist"):
        wrong.check()
    impostor = connect(
        s3.url, BUCKET, access_key=ACCESS_KEY, secret_key="doan-sai", region="us-east-1"
    )
    with pytest.raises(S3Error, match="SignatureDoesNotMatch"):  # signatures are checked
        impostor.put(data)


def test_the_s3_store_over_https_checks_the_certificate_with_the_ca_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, certificate, key = certificates()
    (tmp_path / "ca.pem").write_bytes(ca)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with object_store(tmp_path / "s3", tls=(certificate, key)) as s3:
        assert s3.url.startswith("https://")
        store = connect(
            s3.url,
            BUCKET,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region="us-east-1",
            ca_file=tmp_path / "ca.pem",
        )
        store.client.make_bucket(BUCKET)
        name = store.put(b"anh qua https")
        assert store.get(name) == b"anh qua https"
        unchecked = connect(
            s3.url, BUCKET, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1"
        )
        with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
            unchecked.get(name)


def ticket_media(server: RunningServer, client: httpx.Client, key: str, external_id: str) -> Any:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (external_id,)
        ).fetchone()
    assert row is not None and row[0] is not None
    return client.get(f"/v1/tickets/{row[0]}", headers=auth(key)).json()["media"]


def test_a_photo_posted_with_a_report_is_kept_in_the_object_store_and_shown_from_it(
    server: RunningServer,
    client: httpx.Client,
    source_key: str,
    admin_key: str,
    settings: Settings,
    s3: ObjectStore,
) -> None:
    parts: list[tuple[str, Any]] = [("event", (None, json.dumps(report(1)), "application/json"))]
    parts.append(("media", ("anh.jpg", picture("JPEG", gps=True), "image/jpeg")))
    posted = client.post("/v1/events", files=parts, headers=auth(source_key))
    assert posted.status_code == 201, posted.text
    stored = objects(s3)
    assert len(stored) == 2 and all(key.startswith("ioc/") for key in stored)  # photo, preview
    assert not (settings.data_dir / "media").exists()

    (media,) = ticket_media(server, client, admin_key, "S3-1")
    shown = client.get(media["url"], headers=auth(admin_key))
    assert shown.status_code == 200
    assert shown.headers["content-type"] == "image/jpeg"
    assert b"Test Camera Maker" not in shown.content
    name = shown.headers["etag"].strip('"')
    in_bucket = s3.client().get_object(BUCKET, f"ioc/{name[:2]}/{name[2:4]}/{name}")
    assert in_bucket.read() == shown.content
    in_bucket.close()
    preview = client.get(media["preview_url"], headers=auth(admin_key))
    assert max(Image.open(io.BytesIO(preview.content)).size) == 480


def test_prune_deletes_orphaned_uploads_and_their_objects_only(
    server: RunningServer,
    client: httpx.Client,
    source_key: str,
    settings: Settings,
    s3: ObjectStore,
) -> None:
    def upload(data: bytes) -> Any:
        files = [("media", ("a.jpg", data, "image/jpeg"))]
        answer = client.post("/v1/media", files=files, headers=auth(source_key))
        assert answer.status_code == 201, answer.text
        return answer.json()["media"][0]

    kept, orphan = upload(picture()), upload(picture(colour="navy"))
    posted = client.post(
        "/v1/events", json=report(2, media_ids=[kept["id"]]), headers=auth(source_key)
    )
    assert posted.status_code == 201, posted.text
    assert len(objects(s3)) == 4  # two photos, two previews
    env = {
        "IOC_DATABASE_URL": server.db_url,
        "IOC_DATA_DIR": str(settings.data_dir),
        "IOC_MEDIA_S3_URL": s3.url,
        "IOC_MEDIA_S3_BUCKET": BUCKET,
        "IOC_MEDIA_S3_PREFIX": "ioc/",
        "IOC_MEDIA_S3_ACCESS_KEY": ACCESS_KEY,
        "IOC_MEDIA_S3_SECRET_KEY": SECRET_KEY,
    }

    def ioc(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ioc.cli", *args],
            env={**os.environ, **env, **more},
            capture_output=True,
            text=True,
            timeout=120,
        )

    checked = ioc("media", "check")
    assert checked.returncode == 0, checked.stderr
    assert f"S3 store {s3.url}/{BUCKET}/ioc/: answers" in checked.stdout
    missing = ioc("media", "check", IOC_MEDIA_S3_BUCKET="khong-co")
    assert missing.returncode != 0 and "'khong-co' does not exist" in missing.stderr

    done = ioc("media", "prune", "--older-than-hours", "0")
    assert done.returncode == 0, done.stderr
    assert "deleted 1 orphaned uploads and 2 unused files" in done.stdout
    assert len(objects(s3)) == 2
    admin = make_key(server, "admin")
    assert client.get(kept["url"], headers=auth(admin)).status_code == 200
    assert client.get(kept["preview_url"], headers=auth(admin)).status_code == 200
    assert client.get(orphan["url"], headers=auth(admin)).status_code == 404
    assert not (settings.data_dir / "media").exists()


def test_s3_settings_check_the_endpoint_and_mask_the_secret() -> None:
    chosen = load_settings(
        media_s3_url="https://s3.example.gov.vn:9000/",
        media_s3_secret_key="rat-bi-mat",
    )
    assert chosen.media_s3_url == "https://s3.example.gov.vn:9000"
    assert chosen.shown()["media_s3_secret_key"] == "***"
    assert load_settings(media_s3_url="").media_s3_url is None
    for wrong in ("s3.example.gov.vn", "ftp://s3.example.gov.vn", "https://h/bucket"):
        with pytest.raises(ConfigError, match="IOC_MEDIA_S3_URL"):
            load_settings(media_s3_url=wrong)
