"""Versioned SQL migrations, safe to run twice and from several processes at once.

Files are ``NNNN_name.sql``; a step that differs between servers has ``NNNN_name.plain.sql``
and ``NNNN_name.timescale.sql``. The back end (plain or timescale) is chosen once, when the
first migration runs, and recorded in ``ioc_meta`` so a database never changes kind.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import psycopg

from ioc.errors import ConfigError

log = logging.getLogger(__name__)

Backend = Literal["plain", "timescale"]
_FILE = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<backend>plain|timescale))?\.sql$"
)
# Any fixed number works; it only has to be the same in every process of the platform.
_MIGRATION_LOCK = 0x10C_0001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available(backend: Backend) -> list[Migration]:
    """The migrations shipped with the platform, for one back end, in order."""
    found: dict[int, Migration] = {}
    for entry in resources.files("ioc.store.migrations").iterdir():
        match = _FILE.match(entry.name)
        if not match or match.group("backend") not in (None, backend):
            continue
        version = int(match.group("version"))
        if version in found:
            raise RuntimeError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, match.group("name"), entry.read_text("utf-8"))
    return [found[v] for v in sorted(found)]


def _has_timescale(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning("timescaledb is installed but cannot be loaded: %s", exc)
        return False
    return True


def _choose_backend(conn: psycopg.Connection, wanted: str) -> Backend:
    row = conn.execute("SELECT value FROM ioc_meta WHERE key = 'backend'").fetchone()
    if row is not None:
        chosen: Backend = "timescale" if row[0] == "timescale" else "plain"
        if wanted == "on" and chosen != "timescale":
            raise ConfigError(
                "IOC_TIMESCALE='on' but this database was set up for plain PostgreSQL"
            )
        return chosen
    if wanted == "off":
        chosen = "plain"
    elif _has_timescale(conn):
        chosen = "timescale"
    elif wanted == "on":
        raise ConfigError("IOC_TIMESCALE='on' but the server has no usable timescaledb extension")
    else:
        chosen = "plain"
    conn.execute("INSERT INTO ioc_meta (key, value) VALUES ('backend', %s)", (chosen,))
    return chosen


def _bootstrap(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS ioc_meta (key text PRIMARY KEY, value text NOT NULL)")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


def upgrade(url: str, timescale: str = "auto") -> list[Migration]:
    """Apply pending migrations; returns those applied by this call."""
    applied: list[Migration] = []
    with psycopg.connect(url, autocommit=True) as conn:
        # A session lock, so a second process waits here and then finds nothing left to do.
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            with conn.transaction():
                _bootstrap(conn)
                backend = _choose_backend(conn, timescale)
            done = {
                version: checksum
                for version, checksum in conn.execute(
                    "SELECT version, checksum FROM schema_migrations"
                )
            }
            for migration in available(backend):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        log.warning(
                            "migration %04d_%s changed after it was applied",
                            migration.version,
                            migration.name,
                        )
                    continue
                log.info(
                    "applying migration %04d_%s (%s)", migration.version, migration.name, backend
                )
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied


@dataclass(frozen=True)
class Status:
    backend: Backend | None
    applied: list[int]
    pending: list[int]

    @property
    def current(self) -> bool:
        return self.backend is not None and not self.pending


async def status(conn: psycopg.AsyncConnection[Any]) -> Status:
    """Which migrations are applied and pending, for readiness checks."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return Status(None, [], [m.version for m in available("plain")])
    cur = await conn.execute("SELECT value FROM ioc_meta WHERE key = 'backend'")
    meta = await cur.fetchone()
    backend: Backend = "timescale" if meta and meta[0] == "timescale" else "plain"
    cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
    applied = [int(r[0]) for r in await cur.fetchall()]
    pending = [m.version for m in available(backend) if m.version not in applied]
    return Status(backend, applied, pending)
