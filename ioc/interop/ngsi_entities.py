"""The platform's state as NGSI-LD entities of the Smart Data Models, for FIWARE systems to read.

- ``TrafficFlowObserved`` (dataModel.Transportation): each sensor with its latest reading.
- ``Alert`` (dataModel.Alert): the open alerts.
- ``Open311ServiceRequest`` (dataModel.IssueTracking): the open tickets, as Open311 shows them:
  the reporter's contact details and the assignee never leave the platform.

An agency key sees its own agency's alerts and tickets, as on ``/v1/alerts`` and ``/v1/tickets``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from ioc.auth import Principal, Role
from ioc.interop.ngsi_ld import ENTITY_PREFIX, TRAFFIC, local_name
from ioc.interop.ngsi_query import Column, GeoQuery
from ioc.tickets.states import OPEN_STATES

Conn = psycopg.AsyncConnection[Any]

ALERT: Final = "Alert"
SERVICE_REQUEST: Final = "Open311ServiceRequest"
TYPES: Final = (TRAFFIC, ALERT, SERVICE_REQUEST)
READERS: Final = frozenset({Role.OPERATOR, Role.AGENCY, Role.LEADER, Role.ADMIN})
SDM_CONTEXT: Final = "https://smartdatamodels.org/context.jsonld"
CORE_CONTEXT: Final = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
FORMATS: Final = ("normalized", "concise", "keyValues")

# Our severities → the Alert model's.
SEVERITIES: Final = {"info": "informational", "warning": "medium", "critical": "critical"}
# Our field-report categories → the Alert model's categories (its list is closed; a category
# none of them fits is left out rather than guessed).
ALERT_CATEGORIES: Final = {
    "giao_thong": "traffic",
    "ha_tang": "traffic",
    "chieu_sang": "traffic",
    "cap_thoat_nuoc": "environment",
    "moi_truong": "environment",
    "cay_xanh": "environment",
    "an_toan_thuc_pham": "health",
    "an_ninh_trat_tu": "security",
    "trat_tu_do_thi": "security",
}
_TRAFFIC_RULES: Final = ("congestion", "silent")


def _case(column: str, mapping: Mapping[str, str], default: sql.Composable) -> sql.Composable:
    whens = [
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(k), sql.Literal(v))
        for k, v in mapping.items()
    ]
    return sql.SQL("(CASE {} {} ELSE {} END)").format(
        sql.Identifier(column), sql.SQL(" ").join(whens), default
    )


def _col(name: str) -> sql.Composable:
    return sql.Identifier(name)


_ALERT_CATEGORY = sql.SQL(
    "(CASE WHEN rule IN ('congestion', 'silent') THEN 'traffic' ELSE {} END)"
).format(_case("category", ALERT_CATEGORIES, sql.NULL))


_ALERT_SOURCE = sql.SQL(
    "('urn:ngsi-ld:' || CASE subject_kind WHEN 'sensor' THEN {} WHEN 'ticket' THEN {} "
    "ELSE 'Dossier' END || ':' || subject_id)"
).format(sql.Literal(TRAFFIC), sql.Literal("Open311ServiceRequest"))


@dataclass(frozen=True)
class EntityType:
    name: str
    select: sql.Composable  # the rows, with columns key, lon, lat and those the columns name
    columns: dict[str, Column]  # the attributes q may test
    key_is_number: bool


_TRAFFIC_SELECT = sql.SQL(
    """SELECT s.sensor_id AS key, s.name, s.lon, s.lat, r.observed_at, r.interval_s,
              r.vehicle_count, r.avg_speed_kmh, r.occupancy, r.lane
       FROM sensors s JOIN LATERAL (
         SELECT observed_at, interval_s, vehicle_count, avg_speed_kmh, occupancy, lane
         FROM traffic_readings WHERE sensor_id = s.sensor_id
         ORDER BY observed_at DESC LIMIT 1) r ON true"""
)
_ALERT_SELECT = sql.SQL(
    """SELECT id AS key, subject_kind, subject_id, rule, level, severity, agency, escalated_to,
              category, title, lon, lat, raised_at, acked_at
       FROM alerts WHERE resolved_at IS NULL"""
)
_REQUEST_SELECT = sql.SQL(
    """SELECT t.id AS key, t.category, c.name_vi AS service_name, f.description,
              a.name_vi AS agency_name, t.agency, t.opened_at, t.updated_at, t.deadline_at,
              f.address, t.lon, t.lat, f.media_urls[1] AS media_url
       FROM tickets t
       JOIN field_reports f ON f.id = t.report_id
       LEFT JOIN categories c ON c.code = t.category
       LEFT JOIN agencies a ON a.code = t.agency
       WHERE t.state = ANY({})"""
).format(sql.Literal(sorted(OPEN_STATES)))

ENTITY_TYPES: Final[dict[str, EntityType]] = {
    TRAFFIC: EntityType(
        TRAFFIC,
        _TRAFFIC_SELECT,
        {
            "name": Column(_col("name"), "text"),
            "dateObserved": Column(_col("observed_at"), "datetime"),
            "intensity": Column(_col("vehicle_count"), "number"),
            "averageVehicleSpeed": Column(_col("avg_speed_kmh"), "number"),
            "occupancy": Column(sql.SQL("(occupancy / 100.0)"), "number"),
            "laneId": Column(_col("lane"), "number"),
            "refDevice": Column(sql.SQL("('urn:ngsi-ld:Device:' || key)"), "text"),
        },
        key_is_number=False,
    ),
    ALERT: EntityType(
        ALERT,
        _ALERT_SELECT,
        {
            "category": Column(_ALERT_CATEGORY, "text"),
            "subCategory": Column(
                sql.SQL("(CASE WHEN rule = 'congestion' THEN 'trafficJam' END)"), "text"
            ),
            "severity": Column(_case("severity", SEVERITIES, _col("severity")), "text"),
            "description": Column(_col("title"), "text"),
            "dateIssued": Column(_col("raised_at"), "datetime"),
            "validFrom": Column(_col("raised_at"), "datetime"),
            "alertSource": Column(_ALERT_SOURCE, "text"),
            "data[rule]": Column(_col("rule"), "text"),
            "data[level]": Column(_col("level"), "text"),
            "data[subjectKind]": Column(_col("subject_kind"), "text"),
            "data[subjectId]": Column(_col("subject_id"), "text"),
            "data[agency]": Column(_col("agency"), "text"),
            "data[escalatedTo]": Column(_col("escalated_to"), "text"),
            "data[category]": Column(_col("category"), "text"),
            "data[acknowledged]": Column(sql.SQL("(acked_at IS NOT NULL)"), "bool"),
        },
        key_is_number=True,
    ),
    SERVICE_REQUEST: EntityType(
        SERVICE_REQUEST,
        _REQUEST_SELECT,
        {
            "service_request_id": Column(sql.SQL("(key::text)"), "text"),
            "service_code": Column(_col("category"), "text"),
            "service_name": Column(_col("service_name"), "text"),
            "description": Column(_col("description"), "text"),
            "agency_responsible": Column(_col("agency_name"), "text"),
            "status": Column(sql.SQL("'open'"), "text"),
            "requested_datetime": Column(_col("opened_at"), "datetime"),
            "updated_datetime": Column(_col("updated_at"), "datetime"),
            "expected_datetime": Column(_col("deadline_at"), "datetime"),
            "address_string": Column(_col("address"), "text"),
            "media_url": Column(_col("media_url"), "text"),
        },
        key_is_number=True,
    ),
}


def entity_type(given: str) -> EntityType | None:
    """The published type a ``type`` parameter names (a short name or an IRI ending in it)."""
    return ENTITY_TYPES.get(local_name(given))


def entity_id(kind: str, key: Any) -> str:
    return f"{ENTITY_PREFIX}{kind}:{key}"


@dataclass(frozen=True)
class Query:
    """What GET /entities asks for, already checked."""

    kind: EntityType
    ids: tuple[str, ...] | None = None
    condition: sql.Composable | None = None  # from q
    geo: GeoQuery | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


def _keys(kind: EntityType, ids: Sequence[str]) -> list[Any]:
    prefix = f"{ENTITY_PREFIX}{kind.name}:"
    keys: list[Any] = []
    for given in ids:
        if given.startswith(prefix):
            key = given[len(prefix) :]
            if not kind.key_is_number:
                keys.append(key)
            elif key.isdigit() and len(key) <= 18:
                keys.append(int(key))
    return keys


def _where(query: Query, who: Principal) -> sql.Composable:
    parts: list[sql.Composable] = [sql.SQL("TRUE")]
    if query.ids is not None:
        parts.append(sql.SQL("key = ANY({})").format(sql.Literal(_keys(query.kind, query.ids))))
    if query.condition is not None:
        parts.append(query.condition)
    if query.geo is not None:
        parts.append(query.geo.condition(_col("lon"), _col("lat")))
    if who.role is Role.AGENCY and query.kind.name != TRAFFIC:
        mine = sql.Literal(who.agency or "")
        if query.kind.name == ALERT:
            parts.append(sql.SQL("(agency = {0} OR escalated_to = {0})").format(mine))
        else:
            parts.append(sql.SQL("agency = {}").format(mine))
    return sql.SQL(" AND ").join(parts)


async def find(conn: Conn, query: Query, who: Principal) -> tuple[list[dict[str, Any]], int | None]:
    """(the page of rows, the total when asked for): ordered by the entity's key."""
    who.require(READERS)
    where = _where(query, who)
    total = None
    if query.count:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM ({}) e WHERE {}").format(query.kind.select, where)
        )
        row = await cur.fetchone()
        total = int(row[0]) if row else 0
    rows: list[dict[str, Any]] = []
    if query.limit > 0:
        cur = await conn.execute(
            sql.SQL("SELECT * FROM ({}) e WHERE {} ORDER BY key LIMIT {} OFFSET {}").format(
                query.kind.select, where, sql.Literal(query.limit), sql.Literal(query.offset)
            )
        )
        names = [d.name for d in cur.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
    return rows, total


# --- rendering ---------------------------------------------------------------------------------


def _moment(value: datetime) -> str:
    """An NGSI-LD DateTime: UTC, with Z."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Builder:
    """An entity's attributes in the representation asked for."""

    def __init__(self, kind: str, key: Any, form: str) -> None:
        self.form = form
        self.entity: dict[str, Any] = {"id": entity_id(kind, key), "type": kind}

    def prop(self, name: str, value: Any, **sub: Any) -> None:
        if value is None:
            return
        sub = {k: v for k, v in sub.items() if v is not None}
        if self.form == "keyValues":
            self.entity[name] = value
        elif self.form == "concise":
            self.entity[name] = {"value": value, **sub} if sub else value
        else:
            self.entity[name] = {"type": "Property", "value": value, **sub}

    def moment(self, name: str, value: datetime | None) -> None:
        if value is None:
            return
        text = _moment(value)
        if self.form == "keyValues":
            self.entity[name] = text
        else:
            self.prop(name, {"@type": "DateTime", "@value": text})

    def relation(self, name: str, target: str) -> None:
        if self.form == "keyValues":
            self.entity[name] = target
        elif self.form == "concise":
            self.entity[name] = {"object": target}
        else:
            self.entity[name] = {"type": "Relationship", "object": target}

    def point(self, lon: float | None, lat: float | None) -> None:
        if lon is None or lat is None:
            return
        geometry = {"type": "Point", "coordinates": [lon, lat]}
        if self.form == "normalized":
            self.entity["location"] = {"type": "GeoProperty", "value": geometry}
        else:
            self.entity["location"] = geometry


def traffic_entity(row: Mapping[str, Any], form: str) -> dict[str, Any]:
    out = _Builder(TRAFFIC, row["key"], form)
    end: datetime = row["observed_at"]
    start = end - timedelta(seconds=row["interval_s"])
    observed = _moment(end)
    out.prop("dateObserved", f"{_moment(start)}/{observed}")
    out.moment("dateObservedFrom", start)
    out.moment("dateObservedTo", end)
    out.prop("intensity", row["vehicle_count"], observedAt=observed)
    speed = row["avg_speed_kmh"]
    out.prop(
        "averageVehicleSpeed",
        None if speed is None else round(float(speed), 2),
        observedAt=observed,
        unitCode="KMH",
    )
    occupancy = row["occupancy"]
    out.prop(
        "occupancy",
        None if occupancy is None else round(float(occupancy) / 100, 4),
        observedAt=observed,
        unitCode="C62",
    )
    out.prop("laneId", row["lane"])
    if row["name"]:
        out.prop("name", row["name"])
    out.relation("refDevice", f"{ENTITY_PREFIX}Device:{row['key']}")
    out.point(row["lon"], row["lat"])
    return out.entity


def _subject(kind: str, subject: str) -> str:
    if kind == "sensor":
        return entity_id(TRAFFIC, subject)
    if kind == "ticket":
        return entity_id(SERVICE_REQUEST, subject)
    return f"{ENTITY_PREFIX}Dossier:{subject}"


def alert_entity(row: Mapping[str, Any], form: str) -> dict[str, Any]:
    out = _Builder(ALERT, row["key"], form)
    category = (
        "traffic" if row["rule"] in _TRAFFIC_RULES else ALERT_CATEGORIES.get(row["category"] or "")
    )
    out.prop("category", category)
    if row["rule"] == "congestion":
        out.prop("subCategory", "trafficJam")
    out.prop("severity", SEVERITIES.get(row["severity"], row["severity"]))
    out.prop("description", row["title"])
    out.moment("dateIssued", row["raised_at"])
    out.moment("validFrom", row["raised_at"])
    out.relation("alertSource", _subject(row["subject_kind"], row["subject_id"]))
    out.prop(
        "data",
        {
            "rule": row["rule"],
            "level": row["level"],
            "subjectKind": row["subject_kind"],
            "subjectId": row["subject_id"],
            "agency": row["agency"],
            "escalatedTo": row["escalated_to"],
            "category": row["category"],
            "acknowledged": row["acked_at"] is not None,
        },
    )
    out.point(row["lon"], row["lat"])
    return out.entity


def request_entity(row: Mapping[str, Any], form: str) -> dict[str, Any]:
    out = _Builder(SERVICE_REQUEST, row["key"], form)
    out.prop("service_request_id", str(row["key"]))
    out.prop("status", "open")
    out.prop("service_code", row["category"])
    out.prop("service_name", row["service_name"])
    out.prop("description", row["description"] or None)
    out.prop("agency_responsible", row["agency_name"])
    out.moment("requested_datetime", row["opened_at"])
    out.moment("updated_datetime", row["updated_at"])
    out.moment("expected_datetime", row["deadline_at"])
    out.prop("address_string", row["address"])
    out.prop("media_url", row["media_url"])
    out.point(row["lon"], row["lat"])
    return out.entity


RENDER: Final = {TRAFFIC: traffic_entity, ALERT: alert_entity, SERVICE_REQUEST: request_entity}


def render(
    kind: str, rows: Sequence[Mapping[str, Any]], form: str, attrs: Sequence[str] | None
) -> list[dict[str, Any]]:
    """Rows as entities; ``attrs`` keeps only the attributes named (id and type always stay)."""
    entities = [RENDER[kind](row, form) for row in rows]
    if attrs is not None:
        keep = {"id", "type", *attrs}
        entities = [{k: v for k, v in e.items() if k in keep} for e in entities]
    return entities
