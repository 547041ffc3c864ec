"""Boundary sets in the database: save one (replacing its earlier version), load them all."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import psycopg
import shapely

from ioc.errors import InvalidInput
from ioc.routing.jurisdictions import LEVELS, BoundarySet

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class StoredSet:
    """A boundary set as recorded, without its geometries."""

    level: str
    effective_from: date
    source_name: str
    feature_count: int
    imported_at: datetime


async def save_boundary_set(
    conn: Conn, boundaries: BoundarySet, source_name: str
) -> StoredSet | None:
    """Store ``boundaries`` as the set of its (level, effective_from), replacing any earlier one
    in the same transaction; returns the set it replaced, if there was one."""
    if len(boundaries) == 0:
        raise InvalidInput(
            f"the {boundaries.level} set effective {boundaries.effective_from.isoformat()} "
            "has no jurisdictions; a boundary set needs at least one"
        )
    geoms = np.asarray(boundaries.geometries, dtype=object)
    wkb = shapely.to_wkb(geoms).tolist()
    bounds = shapely.bounds(geoms).tolist()
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            """SELECT level, effective_from, source_name, feature_count, imported_at
               FROM boundary_sets WHERE level = %s AND effective_from = %s FOR UPDATE""",
            (boundaries.level, boundaries.effective_from),
        )
        old = await cur.fetchone()
        # An upsert rather than delete + insert: two imports of the same set at once then
        # queue on the row lock (the last one wins whole) instead of one failing on the key.
        await cur.execute(
            """INSERT INTO boundary_sets (level, effective_from, source_name, feature_count)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (level, effective_from) DO UPDATE
               SET source_name = EXCLUDED.source_name,
                   feature_count = EXCLUDED.feature_count,
                   imported_at = now()
               RETURNING id""",
            (boundaries.level, boundaries.effective_from, source_name, len(boundaries)),
        )
        row = await cur.fetchone()
        assert row is not None
        set_id = int(row[0])
        await cur.execute("DELETE FROM jurisdictions WHERE set_id = %s", (set_id,))
        async with cur.copy(
            """COPY jurisdictions (set_id, level, code, name, parent_code, geometry,
                                   min_lon, min_lat, max_lon, max_lat) FROM STDIN"""
        ) as copy:
            for code, name, parent, blob, box in zip(
                boundaries.codes,
                boundaries.names,
                boundaries.parent_codes,
                wkb,
                bounds,
                strict=True,
            ):
                await copy.write_row((set_id, boundaries.level, code, name, parent, blob, *box))
    return StoredSet(*old) if old is not None else None


async def load_boundary_sets(conn: Conn) -> list[BoundarySet]:
    """Every stored boundary set, by level (province, district, ward) then effective date."""
    cur = await conn.execute(
        """SELECT s.level, s.effective_from, j.code, j.name, j.parent_code, j.geometry
           FROM boundary_sets s JOIN jurisdictions j ON j.set_id = s.id
           ORDER BY array_position(%s::text[], s.level), s.effective_from, j.id""",
        (list(LEVELS),),
    )
    rows = await cur.fetchall()
    sets = []
    for (level, effective_from), group in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
        members = list(group)
        geoms = shapely.from_wkb([bytes(r[5]) for r in members])
        sets.append(
            BoundarySet(
                level=str(level),
                effective_from=effective_from,
                codes=tuple(str(r[2]) for r in members),
                names=tuple(str(r[3]) for r in members),
                parent_codes=tuple(r[4] for r in members),
                geometries=tuple(geoms),
            )
        )
    return sets


async def list_boundary_sets(conn: Conn) -> list[StoredSet]:
    """What is stored (no geometries), by level then effective date."""
    cur = await conn.execute(
        """SELECT level, effective_from, source_name, feature_count, imported_at
           FROM boundary_sets
           ORDER BY array_position(%s::text[], level), effective_from""",
        (list(LEVELS),),
    )
    return [StoredSet(*r) for r in await cur.fetchall()]
