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

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from ioc.store.writer import Table

Conn = psycopg.AsyncConnection[Any]

# Up to this many events a group is written here; larger ones take the COPY path, where the
# parameters (a row's columns each) would cost more than the round trips saved.
MOST: Final = 64


@cache
def _query(table: Table, noted: bool, per_notice: int) -> bytes:
    """The statement for ``table``; ``noted``: with the aggregates' note; ``per_notice``:
    with live notices of up to that many rows each (0: none)."""
    # Each column travels as one array; an array column (text[]) as jsonb, since arrays of
    # arrays must be rectangular.
    arrays = sql.SQL(", ").join(
        sql.SQL("%s::" + ("jsonb" if kind.endswith("[]") else kind) + "[]")
        for kind in (*table.types, "int4", *(["text"] if per_notice else []))
    )
    extra = 2 if per_notice else 1
    names = sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(len(table.columns) + extra))
    values = sql.SQL(", ").join(
        sql.SQL(
            "CASE WHEN {0} IS NOT NULL THEN ARRAY(SELECT jsonb_array_elements_text({0})) END"
            if kind.endswith("[]")
            else "{0}"
        ).format(sql.Identifier(f"c{i}"))
        for i, kind in enumerate(table.types)
    )
    cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    parts: list[sql.Composable] = [
        sql.SQL(
            "WITH given ({cols}, line{frag}) AS"
            " (SELECT {values}, {last} FROM unnest({arrays}) AS u ({names})),"
        ).format(
            cols=cols,
            frag=sql.SQL(", frag" if per_notice else ""),
            values=values,
            last=sql.SQL(", ").join(
                sql.Identifier(f"c{i}")
                for i in range(len(table.columns), len(table.columns) + extra)
            ),
            arrays=arrays,
            names=names,
        ),
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


def _param(kind: str, value: Any) -> Any:
    """A value of a jsonb or array column as its jsonb element (SQL NULL stays NULL)."""
    return None if value is None else Jsonb(list(value) if kind.endswith("[]") else value)


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
    rows = [table.row(event) for event in events]
    params: list[Any] = [
        [_param(kind, value) for value in column]
        if kind.startswith("jsonb") or kind.endswith("[]")
        else list(column)
        for kind, column in zip(table.types, zip(*rows, strict=True), strict=True)
    ]
    params.append(list(lines))
    if notices is not None:
        params.append(list(notices[1]))
    if span is not None:
        params.extend(span)
    if notices is not None:
        params.append(notices[0])
    query = _query(table, span is not None, notices[2] if notices is not None else 0)
    cur = await conn.execute(query, params)
    return {line for (line,) in await cur.fetchall() if line >= 0}
