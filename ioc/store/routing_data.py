"""Loading what the router needs: boundary sets, responsibility rules, category deadlines."""

from __future__ import annotations

from typing import Any

import psycopg

from ioc.routing.router import Router, Rule
from ioc.settings import Settings


async def load_rules(conn: psycopg.AsyncConnection[Any]) -> list[Rule]:
    cur = await conn.execute(
        "SELECT id, agency, category, level, jurisdiction_code FROM responsibility_rules ORDER BY id"
    )
    return [Rule(int(r[0]), r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]


async def load_deadlines(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    cur = await conn.execute("SELECT code, default_deadline_hours FROM categories")
    return {str(code): int(hours) for code, hours in await cur.fetchall()}


async def fingerprint(conn: psycopg.AsyncConnection[Any]) -> str:
    """Changes whenever boundaries, rules, categories or deadline policies change."""
    cur = await conn.execute(
        """SELECT concat_ws('|',
             (SELECT string_agg(id || '@' || imported_at::text, ',' ORDER BY id) FROM boundary_sets),
             (SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY id), '')) FROM responsibility_rules r),
             (SELECT md5(coalesce(string_agg(c::text, ',' ORDER BY code), '')) FROM categories c),
             (SELECT md5(coalesce(string_agg(d::text, ',' ORDER BY subject, key), ''))
              FROM deadline_policies d))"""
    )
    row = await cur.fetchone()
    return str(row[0]) if row else ""


async def load_router(conn: psycopg.AsyncConnection[Any], settings: Settings) -> Router:
    from ioc.store.jurisdictions import load_boundary_sets

    return Router(
        await load_boundary_sets(conn),
        await load_rules(conn),
        fallback_agency=settings.fallback_agency,
        max_distance_m=settings.route_max_distance_m,
    )
