"""Writing events: COPY in batches, one statement for a few events, duplicates skipped.

A batch is written in one transaction, so it is stored whole or not at all. The fast path
COPYs straight into the table; only when that meets a duplicate does the batch go through a
staging table and ``ON CONFLICT DO NOTHING … RETURNING``, which also tells which lines were
duplicates. A few events (a group of single events) go in by one such statement straight
away (``ioc.store.inserts``): no savepoint, no COPY. Readings also note the time window they
touched, for the aggregates' upkeep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

import msgspec
import psycopg
from psycopg import sql

from ioc.events.kinds import (
    DossierEvent,
    Event,
    Feedback,
    FieldReport,
    TrafficCount,
    event_time,
    satisfaction,
)
from ioc.store.aggregates import note_written
from ioc.store.inserts import MOST, insert_few
from ioc.store.partitions import PartitionManager

Conn = psycopg.AsyncConnection[Any]
E = TypeVar("E")


@dataclass(frozen=True)
class Table:
    """How one event kind is laid out in the database."""

    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]
    row: Callable[[Any], tuple[Any, ...]]
    # Where uniqueness lives: the table itself, or a companion key table.
    key_table: str | None = None
    partitioned: bool = False
    # Whether the traffic aggregates are built from it (writes note their window for upkeep).
    aggregated: bool = False


def _field_row(e: FieldReport) -> tuple[Any, ...]:
    # A plain object: COPY's jsonb dumper encodes it (a pre-encoded string would stay a string).
    reporter = msgspec.to_builtins(e.reporter) if e.reporter else None
    return (
        e.source,
        e.external_id,
        e.category,
        e.description,
        e.lon,
        e.lat,
        e.occurred_at,
        e.address,
        reporter,
        list(e.media_urls),
    )


# A reading's fields are its table's columns, in order: the row is the struct's values as a
# tuple, taken in C (readings come by the hundred thousand).
_traffic_row: Callable[[TrafficCount], tuple[Any, ...]] = msgspec.structs.astuple


def _dossier_row(e: DossierEvent) -> tuple[Any, ...]:
    rating, score = satisfaction(e.rating) if e.rating is not None else (None, None)
    return (
        e.source,
        e.external_id,
        e.dossier_id,
        e.procedure_code,
        e.agency,
        e.event,
        e.at,
        e.channel,
        e.online_level,
        e.appointment_at,
        e.paid_online,
        e.digitised,
        e.lon,
        e.lat,
        rating,
        score,
        e.comment,
    )


def _feedback_row(e: Feedback) -> tuple[Any, ...]:
    rating, score = satisfaction(e.rating)
    return (e.source, e.external_id, e.report_id, rating, score, e.comment, e.rated_at)


TABLES: dict[type[Any], Table] = {
    FieldReport: Table(
        "field_reports",
        (
            "source",
            "external_id",
            "category",
            "description",
            "lon",
            "lat",
            "occurred_at",
            "address",
            "reporter",
            "media_urls",
        ),
        (
            "text",
            "text",
            "text",
            "text",
            "float8",
            "float8",
            "timestamptz",
            "text",
            "jsonb",
            "text[]",
        ),
        ("source", "external_id"),
        _field_row,
    ),
    TrafficCount: Table(
        "traffic_readings",
        (
            "sensor_id",
            "observed_at",
            "interval_s",
            "vehicle_count",
            "avg_speed_kmh",
            "occupancy",
            "lane",
        ),
        ("text", "timestamptz", "int4", "int4", "float4", "float4", "int2"),
        ("sensor_id", "observed_at"),
        _traffic_row,
        partitioned=True,
        aggregated=True,
    ),
    DossierEvent: Table(
        "dossier_events",
        (
            "source",
            "external_id",
            "dossier_id",
            "procedure_code",
            "agency",
            "event",
            "at",
            "channel",
            "online_level",
            "appointment_at",
            "paid_online",
            "digitised",
            "lon",
            "lat",
            "rating",
            "score",
            "comment",
        ),
        (
            "text",
            "text",
            "text",
            "text",
            "text",
            "text",
            "timestamptz",
            "text",
            "text",
            "timestamptz",
            "bool",
            "bool",
            "float8",
            "float8",
            "text",
            "int2",
            "text",
        ),
        ("source", "external_id"),
        _dossier_row,
        key_table="dossier_event_keys",
        partitioned=True,
    ),
    Feedback: Table(
        "feedback_events",
        ("source", "external_id", "report_id", "rating", "score", "comment", "rated_at"),
        ("text", "text", "text", "text", "int2", "text", "timestamptz"),
        ("source", "external_id"),
        _feedback_row,
    ),
}


# The earliest and the latest time of each kind's events in a write.
Spans = dict[type[Any], tuple[datetime, datetime]]


def span(events: Sequence[Event]) -> tuple[datetime, datetime]:
    """The earliest and the latest time of events of one kind."""
    moment = _WHEN.get(type(events[0]))
    times = list(map(moment, events)) if moment is not None else [event_time(e) for e in events]
    return min(times), max(times)


_WHEN: dict[type[Any], Callable[[Any], datetime]] = {
    TrafficCount: attrgetter("observed_at"),
    FieldReport: attrgetter("occurred_at"),
    Feedback: attrgetter("rated_at"),
    DossierEvent: attrgetter("at"),
}


@dataclass(frozen=True)
class Written:
    """What happened to the events of one request."""

    stored: int
    duplicate_lines: tuple[int, ...]

    @property
    def duplicates(self) -> int:
        return len(self.duplicate_lines)

    def fresh(self, events: Sequence[E], lines: Sequence[int]) -> list[E]:
        """The ``events`` (at ``lines``) that were stored, not repeats."""
        if not self.duplicate_lines:
            return list(events)
        repeats = set(self.duplicate_lines)
        return [e for e, line in zip(events, lines, strict=True) if line not in repeats]


class EventWriter:
    """Stores checked events; every method runs inside the caller's connection."""

    def __init__(self, partitions: PartitionManager) -> None:
        self.partitions = partitions

    async def prepare(self, conn: Conn, groups: dict[type[Any], list[Event]]) -> Spans:
        """Create partitions the events need. Call before opening the write transaction.
        The span of each partitioned kind's events, for ``write_batch`` to take again."""
        spans: Spans = {}
        for kind, events in groups.items():
            table = TABLES[kind]
            if table.partitioned and events:
                spans[kind] = span(events)
                await self.partitions.ensure(conn, table.name, *spans[kind])
        return spans

    async def write_batch(
        self,
        conn: Conn,
        kind: type[Any],
        events: Sequence[Event],
        lines: Sequence[int],
        known: tuple[datetime, datetime] | None = None,
    ) -> Written:
        """Write one kind's events inside the caller's open transaction; ``known`` is their
        span when already taken (by ``prepare``, for these very events)."""
        table = TABLES[kind]
        window = (known or span(events)) if table.aggregated and events else None
        if 0 < len(events) <= MOST:  # one statement, no savepoint
            inserted = await insert_few(conn, table, events, lines, window)
            repeats = tuple(sorted(line for line in lines if line not in inserted))
            return Written(len(inserted), repeats)
        try:
            async with conn.transaction():
                await self._copy_direct(conn, table, events)
            written = Written(len(events), ())
        except psycopg.errors.UniqueViolation:
            written = await self._copy_staged(conn, table, events, lines)
        if window is not None and written.stored:
            await note_written(conn, *window)
        return written

    async def _copy_direct(self, conn: Conn, table: Table, events: Sequence[Event]) -> None:
        async with conn.cursor() as cur:
            if table.key_table is not None:
                positions = [table.columns.index(k) for k in table.key]
                await self._copy_rows(
                    cur,
                    table.key_table,
                    table.key,
                    [table.types[p] for p in positions],
                    [tuple(table.row(e)[p] for p in positions) for e in events],
                )
            await self._copy_rows(
                cur, table.name, table.columns, table.types, [table.row(e) for e in events]
            )

    @staticmethod
    async def _copy_rows(
        cur: psycopg.AsyncCursor[Any],
        name: str,
        columns: Sequence[str],
        types: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        # Binary COPY: timestamps and numbers go over as their bytes, about five times less
        # client CPU a row than formatting them as text; the types must match the columns.
        query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        async with cur.copy(query) as copy:
            copy.set_types(list(types))
            for row in rows:
                await copy.write_row(row)

    async def _copy_staged(
        self, conn: Conn, table: Table, events: Sequence[Event], lines: Sequence[int]
    ) -> Written:
        stage = sql.Identifier(f"stage_{table.name}")
        cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
        key = sql.SQL(", ").join(map(sql.Identifier, table.key))
        async with conn.cursor() as cur:
            # Only the event columns: the table's own identity and defaults stay out of staging.
            await cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS"
                    " SELECT {}, 0::integer AS line FROM {} WITH NO DATA"
                ).format(stage, cols, sql.Identifier(table.name))
            )
            await cur.execute(sql.SQL("TRUNCATE {}").format(stage))
            await self._copy_rows(
                cur,
                f"stage_{table.name}",
                (*table.columns, "line"),
                (*table.types, "int4"),
                [(*table.row(e), line) for e, line in zip(events, lines, strict=True)],
            )
            # The first line of each key is offered for insertion; RETURNING names the keys that
            # went in, so every other line was a repeat, of a stored row or of an earlier line.
            # Only the key index is consulted: no scan of the table, and no system columns, which
            # TimescaleDB cannot read from compressed chunks.
            firsts = sql.SQL(
                "firsts AS (SELECT DISTINCT ON ({key}) line, {cols} FROM {s} ORDER BY {key}, line)"
            ).format(key=key, cols=cols, s=stage)
            if table.key_table is None:
                query = sql.SQL(
                    "WITH {firsts}, fresh AS (INSERT INTO {t} ({cols}) SELECT {cols} FROM firsts"
                    " ORDER BY line ON CONFLICT DO NOTHING RETURNING {key})"
                    " SELECT firsts.line FROM firsts JOIN fresh USING ({key})"
                ).format(firsts=firsts, t=sql.Identifier(table.name), cols=cols, key=key)
            else:
                query = sql.SQL(
                    "WITH {firsts}, fresh AS (INSERT INTO {k} ({key}) SELECT {key} FROM firsts"
                    " ORDER BY line ON CONFLICT DO NOTHING RETURNING {key}),"
                    " stored AS (INSERT INTO {t} ({cols}) SELECT {cols} FROM firsts"
                    " JOIN fresh USING ({key}) ORDER BY line)"
                    " SELECT firsts.line FROM firsts JOIN fresh USING ({key})"
                ).format(
                    firsts=firsts,
                    k=sql.Identifier(table.key_table),
                    key=key,
                    t=sql.Identifier(table.name),
                    cols=cols,
                )
            await cur.execute(query)
            inserted = {int(r[0]) for r in await cur.fetchall()}
        stored = len(inserted)
        duplicate_lines = tuple(sorted(line for line in lines if line not in inserted))
        return Written(stored, duplicate_lines)
