"""Storing field reports and opening their tickets, each report row written once.

Opening tickets after the reports are stored (``TicketDesk.open_for``) writes every report row
twice: the COPY, then ``UPDATE field_reports SET ticket_id`` once the tickets exist, a second
full row version with a new entry in each of the table's indexes (``ticket_id`` is indexed, so
the update is never HOT) and the foreign-key checks again. When a batch holds no repeat, the
reports' ids are taken from their sequence first, the tickets are planned from them, and each
report is stored once with its ticket id; the reference to the ticket, written before the
ticket, is checked at commit (migration 0026 made it deferrable). A repeat, of a stored
report or of an earlier line, makes that COPY fail: it is undone and the batch takes the
usual path, which sorts the repeats out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from ioc.events.kinds import FieldReport
from ioc.lookup import report_code
from ioc.store.pipelines import pipeline
from ioc.store.writer import TABLES, EventWriter, Written
from ioc.tickets.opening import Opened, TicketDesk
from ioc.tickets.writing import ONE_STATEMENT_ROWS

Codes = dict[tuple[str, str], str]
_SAVEPOINT = "ioc_filing"
_REPORTS = TABLES[FieldReport]
_COPY = sql.SQL("COPY field_reports ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(map(sql.Identifier, (*_REPORTS.columns, "id", "ticket_id")))
)
_TYPES = [*_REPORTS.types, "int8", "int8"]


async def store_reports(
    conn: psycopg.AsyncConnection[Any],
    writer: EventWriter,
    desk: TicketDesk,
    reports: Sequence[FieldReport],
    lines: Sequence[int],
    codes: Codes | None,
) -> Written:
    """Store field reports (numbered by their lines) and open or join their tickets, inside
    the caller's transaction; the new reports' lookup codes go into ``codes`` when given."""
    opened = await _file(conn, desk, reports, codes is not None)
    if opened is None:
        written = await writer.write_batch(conn, FieldReport, reports, lines)
        repeats = set(written.duplicate_lines)
        fresh = [r for r, line in zip(reports, lines, strict=True) if line not in repeats]
        opened = await desk.open_for(conn, fresh)
    else:
        written = Written(len(reports), ())
    if codes is not None:
        codes.update(opened.codes)
    return written


async def _file(
    conn: psycopg.AsyncConnection[Any],
    desk: TicketDesk,
    reports: Sequence[FieldReport],
    want_codes: bool,
) -> Opened | None:
    """Store reports that are all new, each pointing at its ticket; None (nothing written)
    if one of them is a repeat."""
    if not reports:
        return Opened(0, 0)
    # One round trip: the reports' ids (and the transaction's time, their received_at) and
    # the open tickets near them.
    async with pipeline(conn):
        taken = await conn.execute(
            "SELECT nextval((SELECT pg_get_serial_sequence('field_reports', 'id')::regclass)), now()"
            " FROM generate_series(1, %s)",
            (len(reports),),
        )
        around = await desk.query_nearby(conn, reports)
        stored = [(int(i), at) for i, at in await taken.fetchall()]
        nearby = await desk.open_nearby(around)
    new_rows, links = desk.plan(reports, stored, nearby)
    # One round trip: the new tickets' ids, and the savepoint the COPY is undone to.
    async with pipeline(conn):
        reserving = await desk.query_ids(conn, len(new_rows))
        await conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        await conn.execute("SET CONSTRAINTS field_reports_ticket_id_fkey DEFERRED")
        ids = await desk.reserved(reserving)
    pointers = [ids[-ref - 1] if ref < 0 else ref for _, ref, _ in links]
    try:
        async with conn.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for report, (report_id, _), ticket in zip(reports, stored, pointers, strict=True):
                await copy.write_row((*_REPORTS.row(report), report_id, ticket))
    except psycopg.errors.UniqueViolation:
        await conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        await conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        return None
    # One round trip for the rest: the tickets, their links and notices, the lookup codes (many
    # tickets are written by COPY first, outside the pipeline).
    many = len(new_rows) > ONE_STATEMENT_ROWS
    if many:
        await conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        real = await desk.insert(conn, new_rows, ids)
    async with pipeline(conn):
        if not many:
            await conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            real = await desk.insert(conn, new_rows, ids)
        await desk.send_links(conn, links, real, new_rows, point_reports=False)
        secrets = (
            await conn.execute(
                "SELECT id, lookup_secret FROM field_reports WHERE id = ANY(%b::bigint[])",
                ([i for i, _ in stored],),
            )
            if want_codes
            else None
        )
        rows = await secrets.fetchall() if secrets is not None else []
    codes: Codes = {}
    if want_codes:
        found = {int(i): str(c) for i, c in rows if c is not None}
        codes = {
            (str(r.source), r.external_id): report_code(i, found[i])
            for r, (i, _) in zip(reports, stored, strict=True)
            if i in found
        }
    return Opened(len(new_rows), len(links) - len(new_rows), codes)
