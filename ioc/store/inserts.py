"""Writing a few events in one statement, repeats sorted out by the database as it goes.

A group of concurrently posted single events is small (a dozen at 32 clients). The batch path
costs it five round trips: a savepoint, the COPY (two), its release, and the readings' note for
the aggregates' upkeep. Here the rows travel as the parameters of one ``INSERT … ON CONFLICT
DO NOTHING … RETURNING`` that also writes that note: one round trip, with no savepoint, and a
statement that pipelines (COPY does not). As in the staged path, the first line of each key is
offered for insertion and the keys that went in name the stored lines; every other line was a
repeat, of a stored row or of an earlier line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Final

import msgspec
import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from ioc.store.writer import Table

Conn = psycopg.AsyncConnection[Any]

# Up to this many events a group is written here; larger ones take the COPY path, where the
# parameters (a row's columns each) would cost more than the round trips saved.
MOST: Final = 64
_ENCODE: Final = msgspec.json.Encoder().encode


# A JSON value as a column of these types; any other type is cast from the value's text.
_EXTRACT: Final = {
    "jsonb": "NULLIF((r->{0})::jsonb, 'null')",
    "text[]": "CASE WHEN json_typeof(r->{0}) = 'array'"
    " THEN ARRAY(SELECT json_array_elements_text(r->{0})) END",
}


@cache
def _query(table: Table, noted: bool, per_notice: int) -> bytes:
    """The statement for ``table``; ``noted``: with the aggregates' note; ``per_notice``:
    with live notices of up to that many rows each (0: none)."""
    # The rows travel as one JSON array of arrays: a single text parameter, which psycopg
    # passes on as it is (arrays, one a column, cost it a scan of every element).
    values = sql.SQL(", ").join(
        sql.SQL(_EXTRACT.get(kind, "(r->>{0})::" + kind)).format(sql.Literal(i))
        for i, kind in enumerate((*table.types, "int4", *(["text"] if per_notice else [])))
    )
    cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    parts: list[sql.Composable] = [
        sql.SQL(
            "WITH given ({cols}, line{frag}) AS"
            " (SELECT {values} FROM json_array_elements(%s::json) AS r),"
        ).format(cols=cols, frag=sql.SQL(", frag" if per_notice else ""), values=values),
        sql.SQL(
            " firsts AS (SELECT DISTINCT ON ({key}) * FROM given ORDER BY {key}, line),"
        ).format(key=key),
    ]
    if table.key_table is None:
        parts.append(
            sql.SQL(
                " fresh AS (INSERT INTO {t} ({cols}) SELECT {cols} FROM firsts"
                " ORDER BY line ON CONFLICT DO NOTHING RETURNING {key})"
            ).format(t=sql.Identifier(table.name), cols=cols, key=key)
        )
    else:
        parts.append(
            sql.SQL(
                " fresh AS (INSERT INTO {k} ({key}) SELECT {key} FROM firsts"
                " ORDER BY line ON CONFLICT DO NOTHING RETURNING {key}),"
                " stored AS (INSERT INTO {t} ({cols}) SELECT {cols} FROM firsts"
                " JOIN fresh USING ({key}) ORDER BY line)"
            ).format(
                k=sql.Identifier(table.key_table),
                key=key,
                t=sql.Identifier(table.name),
                cols=cols,
            )
        )
    if noted:  # the window is noted only when something was stored
        parts.append(
            sql.SQL(
                ", noted AS (INSERT INTO traffic_backlog (first_at, last_at)"
                " SELECT %s::timestamptz, %s::timestamptz WHERE EXISTS (SELECT FROM fresh))"
            )
        )
    parts.append(
        sql.SQL(" SELECT firsts.line FROM firsts JOIN fresh USING ({key})").format(key=key)
    )
    if per_notice:
        parts.append(_notices(table, per_notice))
    # As bytes: psycopg then parses the placeholders of each statement once, not every time.
    return sql.Composed(parts).as_bytes(None)


def _notices(table: Table, per_notice: int) -> sql.Composed:
    """Live notices of the latest stored row of each ``key[0]`` (by ``key[1]``): each row's
    JSON text joined in the order of its first stored line, ``per_notice`` rows a notice. The
    announcing rows are left out of the answer (they are numbered -1)."""
    group, moment = map(sql.Identifier, table.key[:2])
    return sql.SQL(
        " UNION ALL SELECT -1 FROM (SELECT ioc_announce(%s,"
        " '{{\"readings\": [' || string_agg(frag, ', ' ORDER BY place) || ']}}')"
        " FROM (SELECT frag, place, (row_number() OVER (ORDER BY place) - 1) / {per} AS chunk"
        " FROM (SELECT DISTINCT ON (s.{group}) s.frag,"
        " min(s.line) OVER (PARTITION BY s.{group}) AS place"
        " FROM firsts s JOIN fresh USING ({key}) ORDER BY s.{group}, s.{moment} DESC) AS latest)"
        " AS placed GROUP BY chunk) AS announced"
    ).format(
        per=sql.Literal(per_notice),
        group=group,
        moment=moment,
        key=sql.SQL(", ").join(map(sql.Identifier, table.key)),
    )


async def insert_few(
    conn: Conn,
    table: Table,
    events: Sequence[Any],
    lines: Sequence[int],
    span: tuple[datetime, datetime] | None,
    notices: tuple[str, Sequence[str], int] | None = None,
) -> set[int]:
    """Write up to ``MOST`` events of one table in one statement inside the caller's
    transaction; with ``span`` (the events' first and last time), note it for the aggregates
    when anything was stored. With ``notices`` (a channel, each event's JSON text, rows per
    notice) the stored events are announced as well (see ``_notices``): run on its own in
    autocommit mode, the statement is then the whole write. The lines stored; the others
    were repeats."""
    row = table.row
    if notices is None:
        rows = [(*row(event), line) for event, line in zip(events, lines, strict=True)]
    else:
        rows = [
            (*row(event), line, text)
            for event, line, text in zip(events, lines, notices[1], strict=True)
        ]
    params: list[Any] = [_ENCODE(rows).decode()]
    if span is not None:
        params.extend(span)
    if notices is not None:
        params.append(notices[0])
    query = _query(table, span is not None, notices[2] if notices is not None else 0)
    cur = await conn.execute(query, params)
    return {line for (line,) in await cur.fetchall() if line >= 0}
