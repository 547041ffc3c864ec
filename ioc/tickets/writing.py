"""Writing new tickets, their engine clocks (migration 0024) and their opening events.

A few rows (the group of single POSTs written together) go as one statement of arrays: it
shares a pipeline's round trip with the statements around it (``ioc.tickets.filing``). Many
rows (a batch) go by COPY, which the database writes for less per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec
import psycopg
from psycopg.types.json import Jsonb

# Up to this many new tickets are written by one statement; more, by COPY.
ONE_STATEMENT_ROWS: Final = 64
_json = msgspec.json.Encoder().encode

# One statement, the rows as arrays. Its data-modifying parts run as one; the references of the clocks and
# events to the tickets are checked at its end, when the tickets are there.
_INSERT = """
WITH opened AS (
  INSERT INTO tickets (id, report_id, category, state, agency, jurisdiction_code,
                       jurisdiction_level, routing, lon, lat, opened_at, deadline_at, updated_at,
                       sla_unit, sla_allowed_s, due_soon_at)
  SELECT i, r, c, 'new', a, jc, jl, w::jsonb, x, y, o, d, u, su, sa, ds
  FROM unnest(%b::int8[], %b::int8[], %b::text[], %b::text[], %b::text[], %b::text[],
              %b::text[], %b::float8[], %b::float8[], %b::timestamptz[], %b::timestamptz[],
              %b::timestamptz[], %b::text[], %b::float8[], %b::timestamptz[])
       AS v (i, r, c, a, jc, jl, w, x, y, o, d, u, su, sa, ds)),
clocks AS (
  INSERT INTO ticket_clocks (ticket_id, sla_stage, next_check_at)
  SELECT * FROM unnest(%b::int8[], %b::text[], %b::timestamptz[]))
INSERT INTO ticket_events (ticket_id, at, actor, action, to_state, to_agency, note)
SELECT i, u, 'router', 'open', 'new', a, n
FROM unnest(%b::int8[], %b::timestamptz[], %b::text[], %b::text[]) AS e (i, u, a, n)
"""


# The float8 columns among the planned rows: lon, lat, sla_allowed_s.
_FLOATS = (6, 7, 12)


def _insert_params(rows: Sequence[tuple[Any, ...]], ids: Sequence[int]) -> list[list[Any]]:
    """``_INSERT``'s arrays for the planned rows of ``TicketDesk.plan`` and their ids."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    routing = columns[5]
    notes = []
    for why in routing:
        rule = f" (rule {why['rule']})" if why["rule"] is not None else ""
        place = why["jurisdiction_name"] or "no jurisdiction"
        notes.append(f"routed: {place}{rule}, {why['how']}")
    timed = [n for n, at in enumerate(columns[-1]) if at is not None]
    tickets = list(ids)
    # An array holds one type: whole numbers among the floats go as floats, as COPY sent them.
    for n in _FLOATS:
        columns[n] = [None if v is None else float(v) for v in columns[n]]
    return [
        tickets,
        *columns[:5],
        [_json(why).decode() for why in routing],
        *columns[6:-2],
        [tickets[n] for n in timed],
        [columns[-2][n] for n in timed],
        [columns[-1][n] for n in timed],
        tickets,
        columns[10],
        columns[2],
        notes,
    ]


async def write_tickets(
    conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]], ids: list[int]
) -> None:
    """Write the rows planned by ``TicketDesk.plan`` as tickets with these ids; by COPY when
    they are more than ``ONE_STATEMENT_ROWS`` (COPY cannot run in a pipeline)."""
    if not rows:
        return
    if len(rows) <= ONE_STATEMENT_ROWS:
        await conn.execute(_INSERT, _insert_params(rows, ids))
        return
    async with conn.cursor() as cur:
        async with cur.copy(
            "COPY tickets (id, report_id, category, state, agency, jurisdiction_code,"
            " jurisdiction_level, routing, lon, lat, opened_at, deadline_at, updated_at,"
            " sla_unit, sla_allowed_s, due_soon_at) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                [
                    "int8",
                    "int8",
                    "text",
                    "text",
                    "text",
                    "text",
                    "text",
                    "jsonb",
                    "float8",
                    "float8",
                    "timestamptz",
                    "timestamptz",
                    "timestamptz",
                    "text",
                    "float8",
                    "timestamptz",
                ]
            )
            for ticket, row in zip(ids, rows, strict=True):
                why = Jsonb(row[5], _json)  # the same document; msgspec encodes it faster
                await copy.write_row((ticket, row[0], row[1], "new", *row[2:5], why, *row[6:-2]))
        async with cur.copy(  # the engine's clock (migration 0024): stage, next check
            "COPY ticket_clocks (ticket_id, sla_stage, next_check_at) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "timestamptz"])
            for ticket, row in zip(ids, rows, strict=True):
                if row[-1] is not None:
                    await copy.write_row((ticket, row[-2], row[-1]))
        async with cur.copy(
            "COPY ticket_events (ticket_id, at, actor, action, to_state, to_agency, note)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "timestamptz", "text", "text", "text", "text", "text"])
            for ticket, row in zip(ids, rows, strict=True):
                why = row[5]
                rule = f" (rule {why['rule']})" if why["rule"] is not None else ""
                place = why["jurisdiction_name"] or "no jurisdiction"
                await copy.write_row(
                    (
                        ticket,
                        row[10],
                        "router",
                        "open",
                        "new",
                        row[2],
                        f"routed: {place}{rule}, {why['how']}",
                    )
                )
