"""What the wall map shows, read from the database: a snapshot, and the changes since a cursor.

The page draws everything itself from compact rows (one array per ticket, times in epoch
milliseconds), so 10,000 open tickets are a few hundred kilobytes of JSON, not 10,000 map
objects in the HTML. Reporters' personal data is never read here.

Catching up after a dropped connection. The page keeps a *cursor*, a time that every answer
here carries, and asks for the tickets changed at or after it. Rows written by transactions
that commit late carry times from when they began, so a plain "now" would let the page skip a
ticket whose transaction was still open when the answer was read. The cursor is therefore
set back by the age of the oldest transaction open in the database at that moment, and by a
margin for the wait for a pooled connection (an action's time is taken before it gets one)
and for clock differences between API hosts and the database. The window overlaps the one
before it; the page applies rows idempotently, keeping for each ticket the row with the
highest version (its latest history entry, which the ticket's row lock orders).

The live feed resumes by number instead: the snapshot carries ``seq``, the live log's newest
notice number read before anything else, and a page connects to the feed with ``?after=seq``
(then with the last ``seq`` it received), so it is sent every notice committed after what it
drew and nothing twice but what it applies idempotently anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import psycopg

from ioc.errors import InvalidInput
from ioc.settings import Settings
from ioc.store.livelog import newest
from ioc.tickets.states import OPEN_STATES
from maps.wall import traffic
from maps.wall.dossiers import PLACE_COLUMNS, DossierBoard, board, places
from maps.wall.heat import report_cells

Conn = psycopg.AsyncConnection[Any]

TICKET_COLUMNS: Final = (
    "id",
    "lon",
    "lat",
    "category",
    "state",
    "agency",
    "jurisdiction",
    "opened_at",
    "deadline_at",
    "due_soon_at",
    "paused_at",
    "reports",
    "version",
)
SENSOR_COLUMNS: Final = (
    "id",
    "name",
    "lon",
    "lat",
    "observed_at",
    "vehicles",
    "speed_kmh",
    "interval_s",
)
ALERT_COLUMNS: Final = (
    "id",
    "subject_kind",
    "subject_id",
    "rule",
    "level",
    "severity",
    "agency",
    "category",
    "title",
    "lon",
    "lat",
    "raised_at",
    "acked_at",
)
# Older than this, a page reloads the snapshot instead of asking for changes.
MAX_CATCH_UP: Final = timedelta(hours=1)
# How far back a sensor's latest reading is looked for.
READING_HORIZON: Final = timedelta(days=1)
ACTIVE_ALERTS_SHOWN: Final = 500


def margin(pool_timeout_s: float) -> timedelta:
    """How far the cursor is set back beyond the oldest open transaction."""
    return timedelta(seconds=30 + pool_timeout_s)


class Snapshot(msgspec.Struct, kw_only=True):
    """Everything the wall draws at load; ``cursor`` is where to ask for changes from."""

    server_time: int
    cursor: str
    seq: int  # the live feed's ``after`` for this snapshot
    ticket_columns: tuple[str, ...] = TICKET_COLUMNS
    tickets: list[tuple[Any, ...]]
    sensor_columns: tuple[str, ...] = SENSOR_COLUMNS
    sensors: list[tuple[Any, ...]]
    alert_columns: tuple[str, ...] = ALERT_COLUMNS
    alerts: list[tuple[Any, ...]]
    dossiers: DossierBoard
    traffic: traffic.TrafficBoard
    # Field reports of the last week per ~110 m cell: (lat, lon, reports).
    heat: list[tuple[float, float, int]]
    # Open dossiers with a place (their own or their agency's), for the dossier layer.
    place_columns: tuple[str, ...] = PLACE_COLUMNS
    places: list[tuple[Any, ...]]


class Changes(msgspec.Struct, kw_only=True):
    """Tickets changed since the cursor (any state), and the current alerts and readings.

    ``reload`` is true when the cursor is too old: the page loads a fresh snapshot instead.
    """

    server_time: int
    cursor: str
    reload: bool = False
    ticket_columns: tuple[str, ...] = TICKET_COLUMNS
    tickets: list[tuple[Any, ...]] = []
    sensor_columns: tuple[str, ...] = SENSOR_COLUMNS
    sensors: list[tuple[Any, ...]] = []
    alert_columns: tuple[str, ...] = ALERT_COLUMNS
    alerts: list[tuple[Any, ...]] = []
    dossiers: DossierBoard | None = None
    traffic: traffic.TrafficBoard | None = None


def millis(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


_TICKET_SELECT = """SELECT t.id, t.lon, t.lat, t.category, t.state, t.agency,
       t.jurisdiction_code, t.opened_at, t.deadline_at, t.due_soon_at, t.paused_at,
       t.report_count,
       (SELECT max(e.id) FROM ticket_events e WHERE e.ticket_id = t.id) AS version
  FROM tickets t"""


def _ticket_row(row: Sequence[Any]) -> tuple[Any, ...]:
    return (
        row[0],
        round(row[1], 6),
        round(row[2], 6),
        row[3],
        row[4],
        row[5],
        row[6],
        millis(row[7]),
        millis(row[8]),
        millis(row[9]),
        millis(row[10]),
        row[11],
        row[12] or 0,
    )


async def open_tickets(conn: Conn) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        _TICKET_SELECT + " WHERE t.state = ANY(%s) ORDER BY t.id", (sorted(OPEN_STATES),)
    )
    return [_ticket_row(r) for r in await cur.fetchall()]


async def tickets_by_id(conn: Conn, ids: Sequence[int]) -> list[tuple[Any, ...]]:
    """The rows of these tickets, whatever their state (a closed one leaves the map)."""
    if not ids:
        return []
    cur = await conn.execute(
        _TICKET_SELECT + " WHERE t.id = ANY(%s) ORDER BY t.id", (sorted(set(ids)),)
    )
    return [_ticket_row(r) for r in await cur.fetchall()]


async def tickets_changed(conn: Conn, since: datetime) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        _TICKET_SELECT + " WHERE t.updated_at >= %s ORDER BY t.updated_at, t.id", (since,)
    )
    return [_ticket_row(r) for r in await cur.fetchall()]


async def sensors(conn: Conn, now: datetime) -> list[tuple[Any, ...]]:
    """Every sensor with its latest reading of the last day (none: NULLs)."""
    cur = await conn.execute(
        """SELECT s.sensor_id, s.name, s.lon, s.lat, r.observed_at, r.vehicle_count,
                  r.avg_speed_kmh, r.interval_s
           FROM sensors s LEFT JOIN LATERAL (
             SELECT observed_at, vehicle_count, avg_speed_kmh, interval_s
             FROM traffic_readings
             WHERE sensor_id = s.sensor_id AND observed_at > %s AND observed_at <= %s
             ORDER BY observed_at DESC LIMIT 1) r ON true
           ORDER BY s.sensor_id""",
        (now - READING_HORIZON, now + timedelta(minutes=10)),
    )
    return [
        (
            r[0],
            r[1],
            round(r[2], 6),
            round(r[3], 6),
            millis(r[4]),
            r[5],
            None if r[6] is None else round(float(r[6]), 1),
            r[7],
        )
        for r in await cur.fetchall()
    ]


async def active_alerts(conn: Conn) -> list[tuple[Any, ...]]:
    """The active alerts, most severe and newest first."""
    cur = await conn.execute(
        """SELECT id, subject_kind, subject_id, rule, level, severity, agency, category, title,
                  lon, lat, raised_at, acked_at
           FROM alerts WHERE resolved_at IS NULL
           ORDER BY array_position(ARRAY['critical', 'warning', 'info'], severity),
                    raised_at DESC, id DESC
           LIMIT %s""",
        (ACTIVE_ALERTS_SHOWN,),
    )
    return [(*r[:9], r[9], r[10], millis(r[11]), millis(r[12])) for r in await cur.fetchall()]


async def cursor_at(conn: Conn, now: datetime, pool_timeout_s: float) -> datetime:
    """A cursor for an answer read from ``now`` on (see the module's note)."""
    cur = await conn.execute(
        """SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0)
           FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND xact_start IS NOT NULL"""
    )
    row = await cur.fetchone()
    oldest_s = max(0.0, float(row[0])) if row else 0.0
    return now - timedelta(seconds=oldest_s) - margin(pool_timeout_s)


async def snapshot(conn: Conn, now: datetime, settings: Settings) -> Snapshot:
    # The feed's number and the cursor first: whatever commits while the rest is read is then
    # sent (or asked for) again.
    seq = await newest(conn)
    cursor = await cursor_at(conn, now, settings.pool_timeout_s)
    return Snapshot(
        server_time=millis(now) or 0,
        cursor=cursor.isoformat(),
        seq=seq,
        tickets=await open_tickets(conn),
        sensors=await sensors(conn, now),
        alerts=await active_alerts(conn),
        dossiers=await board(conn, now, settings.zone),
        traffic=await traffic_board(conn, now, settings),
        heat=await report_cells(conn, now),
        places=await places(conn),
    )


async def changes(conn: Conn, since: datetime, now: datetime, settings: Settings) -> Changes:
    cursor = await cursor_at(conn, now, settings.pool_timeout_s)
    if now - since > MAX_CATCH_UP:
        return Changes(server_time=millis(now) or 0, cursor=cursor.isoformat(), reload=True)
    return Changes(
        server_time=millis(now) or 0,
        cursor=cursor.isoformat(),
        tickets=await tickets_changed(conn, since),
        sensors=await sensors(conn, now),
        alerts=await active_alerts(conn),
        dossiers=await board(conn, now, settings.zone),
        traffic=await traffic_board(conn, now, settings),
    )


def baseline_weeks(settings: Settings) -> int:
    """Weeks of the same weekday the traffic chart's baseline averages (the congestion rule's)."""
    return max(1, settings.congestion_baseline_days // 7)


async def traffic_board(conn: Conn, now: datetime, settings: Settings) -> traffic.TrafficBoard:
    return await traffic.board(conn, now, settings.zone, baseline_weeks(settings))


def parse_since(text: str | None) -> datetime:
    """The ``since`` parameter: a cursor from a previous answer (ISO 8601 with an offset)."""
    if not text:
        raise InvalidInput(
            "since: required; pass the 'cursor' of the previous snapshot or changes answer",
            [{"field": "since", "reason": "required"}],
        )
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        reason = f"{text[:40]!r} is not a cursor: an ISO 8601 time with an offset is expected"
        raise InvalidInput(f"since: {reason}", [{"field": "since", "reason": reason}])
    return value


@dataclass(frozen=True)
class Labels:
    """Names the pages show for codes: categories and agencies (Vietnamese)."""

    categories: dict[str, str]
    agencies: dict[str, str]


async def labels(conn: Conn) -> Labels:
    cur = await conn.execute("SELECT code, name_vi FROM categories ORDER BY code")
    categories = {str(c): str(n) for c, n in await cur.fetchall()}
    cur = await conn.execute("SELECT code, name_vi FROM agencies ORDER BY code")
    agencies = {str(c): str(n) for c, n in await cur.fetchall()}
    return Labels(categories, agencies)
