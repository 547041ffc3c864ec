"""Registered reference data the ingest checks against: categories and traffic sensors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import msgspec
import psycopg

from ioc.events.kinds import Ident

Conn = psycopg.AsyncConnection[Any]


class Sensor(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A traffic counter and where it stands."""

    sensor_id: Ident
    lon: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    lat: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    name: Annotated[str, msgspec.Meta(max_length=300)] = ""


class ReferenceData:
    """In-process view of categories and sensors, refreshed on a miss."""

    def __init__(self) -> None:
        self._categories: frozenset[str] = frozenset()
        self._sensors: set[str] = set()

    def categories(self) -> frozenset[str]:
        return self._categories

    async def load(self, conn: Conn) -> None:
        cur = await conn.execute("SELECT code FROM categories")
        self._categories = frozenset(str(r[0]) for r in await cur.fetchall())
        cur = await conn.execute("SELECT sensor_id FROM sensors")
        self._sensors = {str(r[0]) for r in await cur.fetchall()}

    def has_sensor(self, sensor_id: str) -> bool:
        return sensor_id in self._sensors

    async def unknown_sensors(self, conn: Conn, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are not registered (asking the database about cache misses)."""
        missing = {i for i in ids if i not in self._sensors}
        if not missing:
            return missing
        cur = await conn.execute(
            "SELECT sensor_id FROM sensors WHERE sensor_id = ANY(%s)", (list(missing),)
        )
        found = {str(r[0]) for r in await cur.fetchall()}
        self._sensors |= found
        return missing - found


async def upsert_sensors(conn: Conn, sensors: Sequence[Sensor]) -> int:
    """Register or move sensors; returns how many rows were written."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO sensors (sensor_id, name, lon, lat) VALUES (%s, %s, %s, %s)
               ON CONFLICT (sensor_id) DO UPDATE
               SET name = EXCLUDED.name, lon = EXCLUDED.lon, lat = EXCLUDED.lat""",
            [(s.sensor_id, s.name, s.lon, s.lat) for s in sensors],
        )
    return len(sensors)


async def list_sensors(conn: Conn, after: str | None, limit: int) -> list[Sensor]:
    cur = await conn.execute(
        """SELECT sensor_id, lon, lat, name FROM sensors
           WHERE %(after)s::text IS NULL OR sensor_id > %(after)s
           ORDER BY sensor_id LIMIT %(limit)s""",
        {"after": after, "limit": limit},
    )
    return [Sensor(sensor_id=r[0], lon=r[1], lat=r[2], name=r[3]) for r in await cur.fetchall()]
