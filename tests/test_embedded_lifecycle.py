"""The database going away under a running platform, with real processes and kill -9.

`ioc serve` runs as a subprocess. On the embedded database it restarts a postmaster that died;
on a database it does not own it answers 503 at once while that is down and is ready again when
it is back. A server killed outright no longer keeps the embedded postmaster alive after the
last clean stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ioc.store.embedded import HANDLES, EmbeddedPostgres, postmaster_alive
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
PATIENCE_S = 120  # generous: the machine may be busy; nothing here measures speed


@dataclass
class Serving:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """One data directory for the module: the embedded server is set up once, then each test
    starts and stops it through the platform."""
    # Not under pytest's tmp tree: as root, the embedded server runs as its own system user,
    # which must be able to reach its data directory.
    path = Path(tempfile.mkdtemp(prefix="ioc-test-lifecycle-"))
    path.chmod(0o755)
    yield path
    _kill_postmaster(path / "pgdata")  # only if a failed test left one behind
    _kill_postmaster(path / "db" / "pgdata")
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def serving(home: Path, **env: str) -> Iterator[Serving]:
    """`ioc serve` on its own port, ready; stopped with SIGTERM (if still alive) afterwards."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "IOC_DATABASE_URL"}
    # The status page `/` is the data request these tests make without a key.
    environment |= {
        "IOC_DATA_DIR": str(home),
        "IOC_KEY_CACHE_S": "0",
        "IOC_PUBLIC_STATUS": "true",
        **env,
    }
    log = home / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "serve", "--port", str(port)],
            env=environment,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        running = Serving(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_ready(running.url, process)
            yield running
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                # uvicorn shuts down cleanly, then re-raises the signal: exit status -SIGTERM.
                assert process.wait(60) in (0, -signal.SIGTERM)


def wait_ready(url: str, process: subprocess.Popen[bytes] | None = None) -> list[httpx.Response]:
    """Poll /readyz until it answers 200; every answer on the way."""
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            answers.append(httpx.get(f"{url}/readyz", timeout=10))
            if answers[-1].status_code == 200:
                return answers
        except httpx.TransportError:
            pass
        assert process is None or process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "the server did not get ready"
        time.sleep(0.1)


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _kill_postmaster(pgdata: Path) -> None:
    if postmaster_alive(pgdata):
        os.kill(postmaster_pid(pgdata), signal.SIGKILL)


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0


def report(external_id: str) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": external_id,
        "category": "moi_truong",
        "description": "Rác thải tồn đọng trên đường Lê Lợi",
        "lon": 107.59,
        "lat": 16.46,
        "occurred_at": "2025-08-01T07:45:00+07:00",
    }


def create_key(env: dict[str, str]) -> str:
    created = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "keys", "create", "--source", "hue-s"],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_killed_embedded_postmaster_is_started_again(home: Path, workers: str) -> None:
    """One process: its platform restarts the server. Several: the parent process does."""
    pgdata = home / "pgdata"
    with serving(home, IOC_WORKERS=workers) as api:
        first = postmaster_pid(pgdata)
        os.kill(first, signal.SIGKILL)
        wait_gone(first)

        answers = wait_ready(api.url, api.process)

        # Until it was back, readiness said so in the usual way.
        for answer in answers[:-1]:
            assert_unavailable(answer)
            assert answer.json()["status"] == "unavailable"
        assert answers[-1].json()["status"] == "ready"
        assert postmaster_alive(pgdata)
        assert postmaster_pid(pgdata) != first
        # Data requests work again too, on every worker: each worker's own watch reopens its
        # pool when its probe gets through, so the other one may answer 503 a moment longer.
        deadline, in_a_row, statuses = time.monotonic() + 15, 0, []
        while in_a_row < 6 and time.monotonic() < deadline:
            statuses.append(httpx.get(f"{api.url}/", timeout=10).status_code)
            in_a_row = in_a_row + 1 if statuses[-1] == 200 else 0
            if in_a_row == 0:
                time.sleep(0.1)
        assert in_a_row == 6, f"answers after the restart: {statuses}"
    log = api.log.read_text()
    assert log.count("the embedded PostgreSQL server was started again") == 1
    assert not (pgdata / "postmaster.pid").exists(), "PostgreSQL was left running"


def test_requests_during_an_outage_get_503_at_once_and_work_after(home: Path) -> None:
    """The server's database is one it does not own: it cannot restart it, only wait for it."""
    (home / "db").mkdir(exist_ok=True)
    database = EmbeddedPostgres(home / "db")
    url = database.start()
    try:
        env = {"IOC_DATABASE_URL": url}
        # The pool's own timeout is long: answers within the client's 10 s come from the gate.
        with serving(home, **env, IOC_POOL_TIMEOUT_S="60") as running:
            api = running.url
            key = create_key(env)
            headers = {"Authorization": f"Bearer {key}"}
            accepted = httpx.post(
                f"{api}/v1/events", json=report("HS-1"), headers=headers, timeout=10
            )
            assert accepted.status_code == 201, accepted.text

            pid = postmaster_pid(database.pgdata)
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid)

            def post(n: int) -> httpx.Response:
                return httpx.post(
                    f"{api}/v1/events", json=report(f"HS-{n}"), headers=headers, timeout=10
                )

            # Several at once, some of them while the server is still finding out.
            with ThreadPoolExecutor(8) as workers:
                during = list(workers.map(post, range(100, 116)))
            during.append(httpx.get(f"{api}/readyz", timeout=10))
            during.append(post(200))
            for answer in during:
                assert_unavailable(answer)
            assert during[-1].json()["error"]["code"] == "store_unavailable"

            assert database.restart() == url
            wait_ready(api, running.process)
            again = post(300)
            assert again.status_code == 201, again.text
    finally:
        database.stop()
    assert not postmaster_alive(database.pgdata)


def test_clean_stop_after_a_killed_server_stops_the_postmaster(home: Path) -> None:
    pgdata = home / "pgdata"
    with serving(home) as first:
        killed = first.process
        postmaster = postmaster_pid(pgdata)
        assert killed.pid in _handles(pgdata)
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    assert postmaster_alive(pgdata), "the postmaster outlives a server killed outright"

    with serving(home) as second:
        assert postmaster_pid(pgdata) == postmaster  # joined the running one
        assert killed.pid not in _handles(pgdata)
    assert second.process.returncode in (0, -signal.SIGTERM)

    wait_gone(postmaster)
    assert not (pgdata / "postmaster.pid").exists(), "PostgreSQL was left running"


def _handles(pgdata: Path) -> list[int]:
    import json

    return [int(pid) for pid in json.loads((pgdata / HANDLES).read_text())]
