"""Where the database is, and the connection pool the platform shares."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from types import TracebackType

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from ioc.settings import Settings, mask_url
from ioc.store.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)


class DatabaseLocation(AbstractContextManager["DatabaseLocation"]):
    """The configured server, or the embedded one started for the lifetime of this object."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._embedded: EmbeddedPostgres | None = None
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
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

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


def make_pool(
    url: str, settings: Settings
) -> AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]]:
    """A pool that is not yet open (open it inside the app's lifespan)."""
    return AsyncConnectionPool(
        with_timezone(url, settings.timezone),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout_s,
        open=False,
        name="ioc",
        # Single statements commit by themselves; multi-statement work opens a transaction.
        kwargs={"autocommit": True},
    )
