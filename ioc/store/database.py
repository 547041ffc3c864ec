"""Where the database is, and the connection pool the platform shares."""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ioc.settings import Settings, mask_url
from ioc.store.embedded import EmbeddedPostgres
from ioc.store.health import DatabaseGate

Connection = psycopg.AsyncConnection[tuple[object, ...]]

# The pool retries a lost connection with growing pauses (1 s, 2 s, 4 s, ...) for this long,
# then gives up until a request asks for one. Kept short so that no long pause is pending
# when the database comes back; the gate answers requests meanwhile.
RECONNECT_TIMEOUT_S = 4.0

log = logging.getLogger(__name__)


class DatabaseLocation(AbstractContextManager["DatabaseLocation"]):
    """The configured server, or the embedded one started for the lifetime of this object."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._embedded: EmbeddedPostgres | None = None
        self._watch: threading.Thread | None = None
        self._stop_watch = threading.Event()
        self.url = ""

    def open(self) -> str:
        if self._settings.database_url:
            self.url = self._settings.database_url
        else:
            self._embedded = EmbeddedPostgres(self._settings.data_dir)
            self.url = self._embedded.start()
        log.info("database: %s", mask_url(self.url))
        return self.url

    def close(self) -> None:
        if self._watch is not None:
            self._stop_watch.set()
            self._watch.join()
            self._watch = None
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    @property
    def server(self) -> EmbeddedPostgres | None:
        """The embedded server this process started or joined, if any."""
        return self._embedded

    def supervise(self) -> None:
        """Until ``close``, a thread starts the embedded server again if it dies (for a process
        whose workers use the database without owning it). Nothing to do for a configured URL."""
        if self._embedded is None or self._watch is not None:
            return
        self._watch = threading.Thread(
            target=self._embedded.keep_running,
            args=(self._stop_watch,),
            name="embedded-watch",
            daemon=True,
        )
        self._watch.start()

    def __enter__(self) -> DatabaseLocation:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def with_dbname(url: str, name: str) -> str:
    """The same server and credentials, another database."""
    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo("", **params)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """(Re)create database ``name``, optionally from a template; returns its URL."""
    drop_database(admin_url, name)
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(query)
    return with_dbname(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def with_timezone(url: str, zone: str) -> str:
    """The URL with the session time zone set, so timestamps come back in the local zone."""
    params = conninfo_to_dict(url)
    options = str(params.get("options") or "")
    params["options"] = f"{options} -c TimeZone={zone}".strip()
    params.setdefault("application_name", "ioc")
    return make_conninfo("", **params)


class GatedPool(AsyncConnectionPool[Connection]):
    """The platform's pool: refuses at once while the gate is shut, reports what it sees go
    wrong, and lets waiting requests go when the gate shuts."""

    def __init__(self, conninfo: str, gate: DatabaseGate, **kwargs: Any) -> None:
        super().__init__(conninfo, reconnect_failed=self._gave_up, **kwargs)
        self.url = conninfo
        self.gate = gate
        self._waits: set[asyncio.Timeout] = set()
        gate.on_down(self._release_waiters)

    async def getconn(self, timeout: float | None = None) -> Connection:  # noqa: ASYNC109 (base's)
        if not self.gate.up:
            raise self.gate.refusal()
        try:
            async with asyncio.timeout(None) as wait:
                self._waits.add(wait)
                try:
                    return await super().getconn(timeout)
                finally:
                    self._waits.discard(wait)
        except TimeoutError:  # the gate shut while this request waited
            raise self.gate.refusal() from None
        except PoolTimeout:
            self.gate.suspect()
            raise

    async def putconn(self, conn: Connection) -> None:
        # Broken, or closed by whoever used it after a failure (ioc.store.pipelines): either
        # way the database may be away, and the watch checks it now.
        if conn.closed:
            self.gate.suspect()
        await super().putconn(conn)

    async def try_connection(self, wait_s: float) -> None:
        """Get a connection past the gate and use it once (raises if that fails)."""
        conn = await super().getconn(wait_s)
        try:
            await conn.execute("SELECT 1")
        finally:
            await self.putconn(conn)

    def _release_waiters(self) -> None:
        for wait in list(self._waits):
            wait.reschedule(0)

    async def _gave_up(self, _: AsyncConnectionPool[Any]) -> None:
        self.gate.suspect()


def make_pool(url: str, settings: Settings, gate: DatabaseGate | None = None) -> GatedPool:
    """A pool that is not yet open (open it inside the app's lifespan)."""
    return GatedPool(
        with_timezone(url, settings.timezone),
        gate or DatabaseGate(),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout_s,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        open=False,
        name="ioc",
        # Single statements commit by themselves; multi-statement work opens a transaction.
        kwargs={"autocommit": True},
    )
