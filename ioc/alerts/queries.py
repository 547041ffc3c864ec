"""Reading and working alerts and silences, for the API; each caller sees what its role allows.

An agency sees the alerts it is responsible for and those escalated to it; operators, leaders
and administrators see all. Acknowledging stops an alert's repeats. A silence holds back the
delivery (not the recording) of the alerts its matchers select, for a time window; one that
names agencies holds back only the deliveries addressed to them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
import psycopg
from psycopg import sql

from ioc.alerts.records import SUBJECT_KINDS, announce
from ioc.auth import Principal, Role
from ioc.errors import Conflict, Forbidden, InvalidInput, NotFound
from ioc.params import bad as _bad
from ioc.params import cursor_error, pack_cursor, page_limit, unpack_cursor
from ioc.params import text as _text

Conn = psycopg.AsyncConnection[Any]

READERS: Final = frozenset({Role.OPERATOR, Role.AGENCY, Role.LEADER, Role.ADMIN})
ACTORS: Final = frozenset({Role.OPERATOR, Role.AGENCY, Role.ADMIN})
MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100
MATCHER_KEYS: Final = (
    "agency",
    "rule",
    "level",
    "severity",
    "category",
    "subject_kind",
    "subject_id",
    "escalated_to",
)
_FILTERS: Final = ("status", "agency", "rule", "level", "subject_kind", "subject_id", "category")


class Alert(msgspec.Struct, kw_only=True):
    id: int
    subject_kind: str
    subject_id: str
    rule: str
    level: str
    severity: str
    agency: str | None
    escalated_to: str | None
    category: str | None
    title: str
    details: dict[str, Any]
    lon: float | None
    lat: float | None
    raised_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    acked_at: datetime | None
    acked_by: str | None
    notifications: int
    status: str


class AlertPage(msgspec.Struct):
    alerts: list[Alert]
    next: str | None


class Silence(msgspec.Struct, kw_only=True):
    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    active: bool


class _SilenceBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    matchers: dict[str, Annotated[str, msgspec.Meta(min_length=1, max_length=128)]]
    ends_at: datetime
    starts_at: datetime | None = None
    comment: Annotated[str, msgspec.Meta(max_length=2000)] = ""


_COLUMNS: Final = sql.SQL(
    """id, subject_kind, subject_id, rule, level, severity, agency, escalated_to, category,
       title, details, lon, lat, raised_at, resolved_at, resolution, acked_at, acked_by,
       notifications"""
)


def _alert(row: Sequence[Any]) -> Alert:
    return Alert(
        id=row[0],
        subject_kind=row[1],
        subject_id=row[2],
        rule=row[3],
        level=row[4],
        severity=row[5],
        agency=row[6],
        escalated_to=row[7],
        category=row[8],
        title=row[9],
        details=row[10],
        lon=row[11],
        lat=row[12],
        raised_at=row[13],
        resolved_at=row[14],
        resolution=row[15],
        acked_at=row[16],
        acked_by=row[17],
        notifications=row[18],
        status="active" if row[14] is None else "resolved",
    )


def _scope(who: Principal) -> str | None:
    return (who.agency or "") if who.role is Role.AGENCY else None


def _cursor(token: str) -> int:
    values = unpack_cursor(token)
    if len(values) != 2 or values[0] != "a" or type(values[1]) is not int:
        raise cursor_error(token)
    if not 0 < values[1] < 2**63:
        raise cursor_error(token)
    return int(values[1])


def encode_cursor(last_id: int) -> str:
    return pack_cursor(["a", last_id])


async def list_alerts(conn: Conn, who: Principal, query: Mapping[str, Sequence[str]]) -> AlertPage:
    """Newest first; filters: status (active, resolved, all; default active), agency, rule,
    level, subject_kind, subject_id, category; cursor pagination."""
    who.require(READERS)
    unknown = sorted(set(query) - {*_FILTERS, "cursor", "limit"})
    if unknown:
        raise _bad(unknown[0], f"unknown parameter; accepted: {', '.join(_FILTERS)}, cursor, limit")
    one = {k: v[-1] for k, v in query.items() if v}
    status = one.get("status", "active")
    if status not in ("active", "resolved", "all"):
        raise _bad("status", "must be active, resolved or all")
    if one.get("subject_kind", SUBJECT_KINDS[0]) not in SUBJECT_KINDS:
        raise _bad("subject_kind", f"must be one of {', '.join(SUBJECT_KINDS)}")
    limit = page_limit(query, DEFAULT_LIMIT, MAX_LIMIT)
    where: list[sql.Composable] = []
    params: list[Any] = []
    if status == "active":
        where.append(sql.SQL("resolved_at IS NULL"))
    elif status == "resolved":
        where.append(sql.SQL("resolved_at IS NOT NULL"))
    for name in ("rule", "level", "subject_kind", "subject_id", "category"):
        if name in one:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
            params.append(one[name])
    mine = _scope(who)
    if mine is not None:
        if "agency" in one and one["agency"] != mine:
            raise Forbidden("an agency key sees only its own agency's alerts")
        where.append(sql.SQL("(agency = %s OR escalated_to = %s)"))
        params += [mine, mine]
    elif "agency" in one:
        where.append(sql.SQL("(agency = %s OR escalated_to = %s)"))
        params += [one["agency"], one["agency"]]
    if "cursor" in one:
        where.append(sql.SQL("id < %s"))
        params.append(_cursor(one["cursor"]))
    query_sql = sql.SQL("SELECT {} FROM alerts WHERE {} ORDER BY id DESC LIMIT %s").format(
        _COLUMNS, sql.SQL(" AND ").join([*where, sql.SQL("true")])
    )
    cur = await conn.execute(query_sql, [*params, limit + 1])
    rows = await cur.fetchall()
    alerts = [_alert(r) for r in rows[:limit]]
    return AlertPage(alerts, encode_cursor(alerts[-1].id) if len(rows) > limit else None)


async def get_alert(conn: Conn, who: Principal, alert_id: int) -> Alert:
    who.require(READERS)
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM alerts WHERE id = %s").format(_COLUMNS), (alert_id,)
    )
    row = await cur.fetchone()
    mine = _scope(who)
    if row is None or (mine is not None and mine not in (row[6], row[7])):
        raise NotFound(f"no alert {alert_id} for you")
    return _alert(row)


async def acknowledge(
    conn: Conn, who: Principal, alert_id: int, actor: str, now: datetime
) -> Alert:
    """Acknowledge an alert: it is seen, so it stops repeating. Twice is harmless."""
    who.require(ACTORS)
    async with conn.transaction():
        alert = await get_alert(conn, who, alert_id)
        if alert.acked_at is None:
            await conn.execute(
                "UPDATE alerts SET acked_at = %s, acked_by = %s,"
                " notify_at = CASE WHEN digest THEN notify_at END WHERE id = %s",
                (now, actor, alert_id),
            )
            await announce(conn, [alert_id])
        return await get_alert(conn, who, alert_id)


def decode_silence(body: bytes | bytearray) -> _SilenceBody:
    try:
        silence = msgspec.json.decode(body, type=_SilenceBody)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"the silence is not valid: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from None
    if not silence.matchers:
        raise _bad(
            "matchers", "at least one matcher is needed (a silence of everything is refused)"
        )
    _text("comment", silence.comment)
    for key, value in silence.matchers.items():
        _text(f"matchers.{_text('matchers', key)}", value)
        if key not in MATCHER_KEYS:
            raise _bad(f"matchers.{key}", f"unknown matcher; accepted: {', '.join(MATCHER_KEYS)}")
    for name in ("starts_at", "ends_at"):
        value = getattr(silence, name)
        if value is not None and value.tzinfo is None:
            raise _bad(name, "needs a UTC offset, e.g. 2026-11-21T17:00:00+07:00")
    return silence


async def create_silence(
    conn: Conn, who: Principal, body: bytes | bytearray, actor: str, now: datetime
) -> Silence:
    who.require(ACTORS)
    silence = decode_silence(body)
    starts = silence.starts_at or now
    if silence.ends_at <= max(starts, now):
        raise _bad("ends_at", "must be after starts_at and in the future")
    mine = _scope(who)
    if mine is not None and silence.matchers.get("agency") != mine:
        raise Forbidden(f"an agency key may silence only its own alerts: add agency={mine!r}")
    if mine is not None and silence.matchers.get("escalated_to", mine) != mine:
        raise Forbidden(
            "an agency key may hold back only deliveries to itself, not escalations to "
            f"{silence.matchers['escalated_to']!r}"
        )
    cur = await conn.execute(
        """INSERT INTO alert_silences (matchers, starts_at, ends_at, created_by, comment)
           VALUES (%s, %s, %s, %s, %s)
           RETURNING id, matchers, starts_at, ends_at, created_by, comment""",
        (json.dumps(silence.matchers), starts, silence.ends_at, actor, silence.comment),
    )
    row = await cur.fetchone()
    assert row is not None
    return _silence(row, now)


def _silence(row: Sequence[Any], now: datetime) -> Silence:
    return Silence(
        id=row[0],
        matchers=row[1],
        starts_at=row[2],
        ends_at=row[3],
        created_by=row[4],
        comment=row[5],
        active=row[2] <= now < row[3],
    )


async def list_silences(conn: Conn, who: Principal, now: datetime) -> list[Silence]:
    """Silences not yet over (active or scheduled)."""
    who.require(READERS)
    cur = await conn.execute(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment FROM alert_silences"
        " WHERE ends_at > %s ORDER BY ends_at, id",
        (now,),
    )
    mine = _scope(who)
    return [
        _silence(r, now) for r in await cur.fetchall() if mine is None or r[1].get("agency") == mine
    ]


async def expire_silence(conn: Conn, who: Principal, silence_id: int, now: datetime) -> Silence:
    who.require(ACTORS)
    cur = await conn.execute(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment FROM alert_silences"
        " WHERE id = %s",
        (silence_id,),
    )
    row = await cur.fetchone()
    mine = _scope(who)
    if row is None or (mine is not None and row[1].get("agency") != mine):
        raise NotFound(f"no silence {silence_id}")
    if row[3] <= now:
        raise Conflict(f"silence {silence_id} is already over")
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE alert_silences SET ends_at = greatest(%s, starts_at + interval '1 microsecond')"
            " WHERE id = %s RETURNING id, matchers, starts_at, ends_at, created_by, comment",
            (now, silence_id),
        )
        updated = await cur.fetchone()
        assert updated is not None
        # What this silence held back waits for its old end: release it now (the engine holds
        # it again if another silence still applies).
        await conn.execute(
            "UPDATE alerts SET notify_at = %s WHERE notify_at = %s AND resolved_at IS NULL",
            (now, row[3]),
        )
    return _silence(updated, now)


@dataclass(frozen=True)
class AlertFeed:
    """Which live alert messages a caller receives: all (``agency`` None), or those of one
    agency (raised for it or escalated to it). A value, equal for callers who see the same."""

    agency: str | None

    def __call__(self, message: Mapping[str, Any]) -> bool:
        if "alert" not in message:
            return False
        mine = self.agency
        return mine is None or mine in (message.get("agency"), message.get("escalated_to"))


def feed_filter(who: Principal) -> AlertFeed:
    """Which live alert messages this caller receives."""
    who.require(READERS)
    return AlertFeed(_scope(who))


async def dossier(conn: Conn, who: Principal, dossier_id: str) -> dict[str, Any]:
    """A dossier's state and clock, with its apology letters (operators, leaders, admin)."""
    who.require(frozenset({Role.OPERATOR, Role.LEADER, Role.ADMIN}))
    cur = await conn.execute(
        """SELECT dossier_id, procedure_code, agency, state, channel, online_level, paid_online,
                  digitised, registered_at, accepted_at, appointment_at, deadline_at, due_soon_at,
                  paused_at, paused_s, finished_at, result, used_working_s, event_count
           FROM dossiers WHERE dossier_id = %s""",
        (dossier_id,),
    )
    row = await cur.fetchone()
    if row is None or cur.description is None:
        raise NotFound(f"no dossier {dossier_id!r}")
    out = {column.name: value for column, value in zip(cur.description, row, strict=True)}
    cur = await conn.execute(
        "SELECT form, issued_at, agency, old_appointment_at, new_appointment_at, reason"
        " FROM dossier_apologies WHERE dossier_id = %s ORDER BY id",
        (dossier_id,),
    )
    keys = ("form", "issued_at", "agency", "old_appointment_at", "new_appointment_at", "reason")
    out["apologies"] = [dict(zip(keys, r, strict=True)) for r in await cur.fetchall()]
    return out
