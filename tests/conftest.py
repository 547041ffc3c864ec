"""Test harness: a real PostgreSQL and a real server on a real port.

Tests run on the server named by IOC_TEST_DATABASE_URL, else on an embedded PostgreSQL started
for the session. Each test gets its own database, copied from a migrated template (one test
ahead, by a thread); tests with pages share one chromium, each in a fresh context.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import sql

from ioc.api.app import create_app
from ioc.api.body import server_limits
from ioc.settings import Settings
from ioc.store import migrate
from ioc.store.database import create_database, drop_database, with_dbname
from ioc.store.embedded import EmbeddedPostgres

TEMPLATE = "ioc_test_template"


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    given = os.environ.get("IOC_TEST_DATABASE_URL")
    if given:
        yield given
        return
    # Not under pytest's tmp tree: that is private (0700) and, as root, the embedded server
    # runs as its own system user, which must be able to reach its data directory.
    home = Path(tempfile.mkdtemp(prefix="ioc-test-pg-"))
    home.chmod(0o755)
    server = EmbeddedPostgres(home)
    url = server.start()
    yield with_dbname(url, "postgres")
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


def _set_template(admin_url: str, sealed: bool) -> None:
    """Seal the template (a template, closed to connections, none left) or open it again.

    CREATE DATABASE … TEMPLATE fails while anyone is connected to the template, and on
    TimescaleDB its background scheduler connects to every database that allows it.
    """
    name = sql.Identifier(TEMPLATE)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,)).fetchone():
            return
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {} IS_TEMPLATE {}").format(
                name, sql.SQL(str(not sealed).lower()), sql.SQL(str(sealed).lower())
            )
        )
        if sealed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (TEMPLATE,),
            )


@pytest.fixture(scope="session")
def template_url(admin_url: str) -> Iterator[str]:
    _set_template(admin_url, sealed=False)  # a template left sealed cannot be dropped
    url = create_database(admin_url, TEMPLATE)
    migrate.upgrade(url)
    _set_template(admin_url, sealed=True)
    yield url
    _set_template(admin_url, sealed=False)  # leave a shared server as an unsealed database


class _Databases:
    """Test databases copied from the template one test ahead, and dropped after it, by a
    thread of their own: the server copies a database while the previous test runs."""

    def __init__(self, admin_url: str) -> None:
        self._admin_url = admin_url
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._next: Future[tuple[str, str]] | None = None

    def _create(self) -> tuple[str, str]:
        name = f"ioc_test_{uuid.uuid4().hex[:12]}"
        return name, create_database(self._admin_url, name, template=TEMPLATE)

    def take(self) -> tuple[str, str]:
        """A fresh database: (name, url)."""
        ready = self._next or self._worker.submit(self._create)
        self._next = self._worker.submit(self._create)
        return ready.result()

    def drop(self, name: str) -> None:
        self._worker.submit(drop_database, self._admin_url, name)

    def close(self) -> None:
        if self._next is not None:
            with contextlib.suppress(Exception):
                self.drop(self._next.result()[0])
        self._worker.shutdown(wait=True)


@pytest.fixture(scope="session")
def _databases(admin_url: str, template_url: str) -> Iterator[_Databases]:
    databases = _Databases(admin_url)
    yield databases
    databases.close()


@pytest.fixture
def db_url(_databases: _Databases) -> Iterator[str]:
    name, url = _databases.take()
    yield url
    _databases.drop(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    ws_url: str
    app: Any
    db_url: str

    @property
    def platform(self) -> Any:
        return self.app.state.platform

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (for direct database set-up)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]


class _ServerThread(threading.Thread):
    def __init__(self, app: Any, port: int) -> None:
        super().__init__(daemon=True)
        limits = server_limits(app.state.platform.settings)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, log_config=None, lifespan="on", **limits
            )
        )
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())
        self.loop.close()


def start_server(
    settings: Settings, clock: Any = None, port: int | None = None
) -> tuple[_ServerThread, RunningServer]:
    port = port or free_port()
    app = create_app(settings, clock)
    thread = _ServerThread(app, port)
    thread.start()
    deadline = time.monotonic() + 60
    while not thread.server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    assert thread.loop is not None
    running = RunningServer(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app, settings.database_url or ""
    )
    running.loop = thread.loop
    return thread, running


def stop_server(thread: _ServerThread) -> None:
    thread.server.should_exit = True
    thread.join(30)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=tmp_path,
        max_body_bytes=2 * 1024 * 1024,
        max_batch_events=1000,
        aggregate_refresh_s=3600,
        key_cache_s=0,
        sla_engine=False,  # engine tests tick it themselves, with the time they choose
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[RunningServer]:
    thread, running = start_server(settings)
    yield running
    stop_server(thread)


def make_key(
    server: RunningServer, role: str, source: str | None = None, agency: str | None = None
) -> str:
    from ioc.store.keys import create_key

    async def create() -> str:
        async with server.platform.pool.connection() as conn:
            key, _ = await create_key(conn, role, source, agency, f"test {role}")
            return key.token

    return str(server.run(create()))


def make_user(
    server: RunningServer, login: str, name: str, agency: str | None = "ioc", role: str = "agency"
) -> str:
    """An official's account (temporary password); returns the password."""
    from ioc.accounts import check_user
    from ioc.store.users import create_user

    async def create() -> str:
        async with server.platform.pool.connection() as conn:
            user = check_user(login, name, role, agency)
            return (await create_user(conn, user, None, server.platform.clock.now()))[1]

    return str(server.run(create()))


@pytest.fixture
def source_key(server: RunningServer) -> str:
    return make_key(server, "source", source="hue-s")


@pytest.fixture
def admin_key(server: RunningServer) -> str:
    return make_key(server, "admin")


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def sensors(client: httpx.Client, admin_key: str) -> list[str]:
    ids = ["HUE-TS-001", "HUE-TS-002", "HUE-TS-003"]
    body = [
        {"sensor_id": s, "lon": 107.58 + i / 100, "lat": 16.46, "name": f"Nút giao {i}"}
        for i, s in enumerate(ids)
    ]
    response = client.post("/v1/sensors", json=body, headers=auth(admin_key))
    assert response.status_code == 200, response.text
    return ids


# --- a real browser for the pages: Debian's chromium, driven by Playwright -------------------

CHROMIUM = os.environ.get("IOC_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]


@dataclass
class _Chromium:
    playwright: Any
    browser: Any
    loop: asyncio.AbstractEventLoop | None


def _launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def _chromium() -> Iterator[_Chromium]:
    """One Playwright driver and one chromium for the session (starting them takes seconds).

    Playwright's sync API marks its event loop as running in this thread between its calls,
    and other tests call asyncio.run(): the loop is shown only while a test's ``browser``
    fixture is set up, and hidden again when it is torn down.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no browser at {CHROMIUM}: `./run.sh test` installs Debian's chromium "
            "(or `apt-get install chromium`; IOC_TEST_CHROMIUM names another binary)"
        )
    with sync_playwright() as playwright:
        chromium = _Chromium(playwright, _launch(playwright), asyncio._get_running_loop())
        asyncio._set_running_loop(None)
        try:
            yield chromium
        finally:
            asyncio._set_running_loop(chromium.loop)
            chromium.browser.close()


@pytest.fixture
def browser(_chromium: _Chromium) -> Iterator[Any]:
    """The session's headless chromium, for one test: whatever contexts (cookies, pages) the
    test opened are closed after it, so the next test starts from none."""
    asyncio._set_running_loop(_chromium.loop)
    try:
        if not _chromium.browser.is_connected():  # a test crashed it: a new one for the next
            _chromium.browser = _launch(_chromium.playwright)
        yield _chromium.browser
        for context in _chromium.browser.contexts:
            context.close()
    finally:
        asyncio._set_running_loop(None)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (its own cookies) in Vietnam's time zone and language."""
    context = browser.new_context(
        locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", viewport={"width": 1600, "height": 900}
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def open_session(server: RunningServer, key: str) -> str:
    """A login session for ``key``, as POST /login opens it; returns the session cookie's value."""
    from ioc.store.sessions import open_session as store_session

    platform = server.platform

    async def create() -> str:
        async with platform.pool.connection() as conn:
            who = await platform.verifier.verify(platform.pool.connection, key)
            return await store_session(
                conn, who.key_id, platform.clock.now(), platform.settings.session_ttl_s
            )

    return str(server.run(create()))


def log_in(page: Any, server: RunningServer, key: str) -> str:
    """Give the page the session cookie POST /login would set for ``key``; returns the session."""
    session = open_session(server, key)
    page.context.add_cookies(
        [
            {
                "name": server.platform.auth.cookie,
                "value": session,
                "url": server.url,
                "httpOnly": True,
                "sameSite": "Strict",
            }
        ]
    )
    return session
