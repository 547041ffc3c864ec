"""The database back ends the test server offers, and databases made for a chosen one.

Tests that depend on the back end take it as a parameter over ``BACKENDS``, so on a TimescaleDB
server (``IOC_TEST_DATABASE_URL``) they run on both a TimescaleDB and a plain database, and on
plain PostgreSQL (the embedded default, which has no TimescaleDB) on plain only.
"""

from __future__ import annotations

import os
import uuid

import psycopg

from ioc.store import migrate
from ioc.store.database import create_database


def _offered() -> list[str]:
    url = os.environ.get("IOC_TEST_DATABASE_URL")
    if not url:
        return ["plain"]
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    return ["plain", "timescale"] if row else ["plain"]


BACKENDS = _offered()


def backend_database(admin_url: str, backend: str) -> str:
    """A new database migrated for ``backend``; the caller drops it."""
    url = create_database(admin_url, f"ioc_test_{backend}_{uuid.uuid4().hex[:10]}")
    migrate.upgrade(url, "on" if backend == "timescale" else "off")
    return url
