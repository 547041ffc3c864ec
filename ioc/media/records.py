"""Media rows: one per upload, linked to its report in the report's own transaction.

Who may see a photo: operators and admins, and the officials of the agency whose ticket holds
the report (an upload not linked to a report: operators and admins only). Anyone else gets
"not found", so a photo's existence does not leak.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from ioc.auth import Principal, Role
from ioc.errors import NotFound
from ioc.events.kinds import FieldReport
from ioc.media.images import Photo
from ioc.media.store import MediaStore

Conn = psycopg.AsyncConnection[Any]

_EVERYTHING = frozenset({Role.OPERATOR, Role.ADMIN})


class Media(msgspec.Struct, kw_only=True):
    """A photo as the API shows it: where to fetch it and its preview, and where it was taken."""

    id: str
    url: str
    preview_url: str
    content_type: str
    bytes: int
    width: int
    height: int
    lon: float | None
    lat: float | None
    uploaded_at: datetime


def media_path(media_id: str) -> str:
    return f"/v1/media/{media_id}"


def _media(row: Sequence[Any]) -> Media:
    media_id = str(row[0])
    return Media(
        id=media_id,
        url=media_path(media_id),
        preview_url=media_path(media_id) + "/preview",
        content_type=row[1],
        bytes=row[2],
        width=row[3],
        height=row[4],
        lon=row[5],
        lat=row[6],
        uploaded_at=row[7],
    )


_COLUMNS = "m.id, m.content_type, m.bytes, m.width, m.height, m.lon, m.lat, m.uploaded_at"


async def insert(
    conn: Conn,
    photo: Photo,
    preview_sha256: str,
    who: Principal,
    now: datetime,
) -> Media:
    """A row for a stored upload, not yet linked to any report."""
    cur = await conn.execute(
        f"""INSERT INTO media (id, sha256, content_type, bytes, width, height, preview_sha256,
                               lon, lat, source, uploaded_by, uploaded_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING {_COLUMNS.replace("m.", "")}""",
        (
            uuid.uuid4(),
            photo.sha256,
            photo.content_type,
            len(photo.data),
            photo.width,
            photo.height,
            preview_sha256,
            photo.lon,
            photo.lat,
            who.source if who.role is Role.SOURCE else None,
            who.login or who.label or who.role.value,
            now,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return _media(row)


async def forget(conn: Conn, ids: Sequence[str]) -> None:
    """Drop uploads that no report took (their report was refused or a repeat)."""
    if ids:
        await conn.execute(
            "DELETE FROM media WHERE id = ANY(%s::uuid[]) AND report_id IS NULL", (list(ids),)
        )


async def link(conn: Conn, reports: Sequence[FieldReport]) -> None:
    """Link stored reports' uploads to them; call in the transaction that stored them."""
    rows = [
        (r.source, r.external_id, media_id, position)
        for r in reports
        for position, media_id in enumerate(dict.fromkeys(r.media_ids))
    ]
    if rows:
        sources, externals, ids, positions = (list(column) for column in zip(*rows, strict=True))
        await conn.execute(
            "SELECT ioc_link_media(%s::text[], %s::text[], %s::uuid[], %s::int[])",
            (sources, externals, ids, positions),
        )


async def of_tickets(conn: Conn, ticket_ids: Sequence[int]) -> dict[int, list[Media]]:
    """The photos of every report of each ticket, in the order they were reported."""
    cur = await conn.execute(
        f"""SELECT f.ticket_id, {_COLUMNS} FROM media m JOIN field_reports f ON f.id = m.report_id
            WHERE f.ticket_id = ANY(%s) ORDER BY f.ticket_id, f.id, m.position""",
        (list(ticket_ids),),
    )
    found: dict[int, list[Media]] = {}
    for row in await cur.fetchall():
        found.setdefault(int(row[0]), []).append(_media(row[1:]))
    return found


async def first_of_reports(conn: Conn, report_ids: Sequence[int]) -> dict[int, str]:
    """Each report's first photo's id (for Open311's one ``media_url``)."""
    cur = await conn.execute(
        """SELECT DISTINCT ON (report_id) report_id, id FROM media
           WHERE report_id = ANY(%s) ORDER BY report_id, position""",
        (list(report_ids),),
    )
    return {int(r): str(m) for r, m in await cur.fetchall()}


@dataclass(frozen=True)
class File:
    """What to send for one media request."""

    name: str
    content_type: str


async def file_for(conn: Conn, who: Principal, media_id: str, preview: bool) -> File:
    """The stored file a caller may fetch, or NotFound (also for one it may not see)."""
    missing = NotFound(f"no media {media_id!r} that this key may see")
    try:
        key = uuid.UUID(media_id)
    except ValueError:
        raise missing from None
    cur = await conn.execute(
        """SELECT m.sha256, m.preview_sha256, m.content_type, m.report_id, t.agency
           FROM media m LEFT JOIN field_reports f ON f.id = m.report_id
           LEFT JOIN tickets t ON t.id = f.ticket_id WHERE m.id = %s""",
        (key,),
    )
    row = await cur.fetchone()
    if row is None:
        raise missing
    sha, preview_sha, content_type, report, agency = row
    allowed = who.role in _EVERYTHING or (
        who.role is Role.AGENCY
        and report is not None
        and agency is not None
        and agency == who.agency
    )
    if not allowed:
        raise missing
    if preview:
        return File(preview_sha, "image/jpeg")
    return File(sha, content_type)


@dataclass(frozen=True)
class Pruned:
    rows: int
    files: int


async def prune(conn: Conn, store: MediaStore, orphaned_before: datetime, grace_s: float) -> Pruned:
    """Delete uploads never linked before ``orphaned_before``, then files no row names (written
    more than ``grace_s`` ago, so an upload in progress keeps its file)."""
    cur = await conn.execute(
        "DELETE FROM media WHERE report_id IS NULL AND uploaded_at < %s", (orphaned_before,)
    )
    rows = cur.rowcount
    files = 0
    # The store's calls block (a folder's disk, an object store's network): off the loop.
    for name in await asyncio.to_thread(lambda: list(store.names(grace_s))):
        held = await conn.execute(
            "SELECT 1 FROM media WHERE sha256 = %s OR preview_sha256 = %s LIMIT 1", (name, name)
        )
        if await held.fetchone() is None:
            await asyncio.to_thread(store.delete, name)
            files += 1
    return Pruned(rows, files)
