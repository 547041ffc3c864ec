"""Open311 GeoReport v2: our categories as services, our tickets as service requests.

No web framework here: the router (``ioc.api.open311``) reads the request and calls these.
The reporter's contact details go in (a form becomes a field report) but never come out.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final

import psycopg

from ioc.errors import NotFound
from ioc.tickets.states import MOVES, OPEN_STATES, STATES

Conn = psycopg.AsyncConnection[Any]

SPECIFICATION: Final = "http://wiki.open311.org/GeoReport_v2"
# When this Open311 surface last changed; clients compare it to decide whether to re-read.
CHANGESET: Final = "2025-08-01T00:00:00+07:00"
CONTACT: Final = "Trung tâm Giám sát, điều hành đô thị thông minh (IOC)"
KEY_SERVICE: Final = (
    "Writes need api_key: a source key issued by the operations center "
    "(ioc keys create --source <name>). Reads need no key."
)
MEDIA_TYPES: Final = {"json": "application/json", "xml": "text/xml"}
MAX_REQUESTS: Final = 1000
WINDOW: Final = timedelta(days=90)
MAX_DESCRIPTION: Final = 4000  # the GeoReport v2 limit, on the way in and out

STATUSES: Final[dict[str, frozenset[str]]] = {
    "open": OPEN_STATES,
    "closed": frozenset(STATES) - OPEN_STATES,
}

_ITEM_TAGS: Final = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "attributes": "attribute",
    "values": "value",
}
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
ID_PATTERN = re.compile(r"[0-9]{1,18}")
# status_notes shows the reason given with a move; an assignment names staff, so it is left out.
_PUBLIC_NOTES: Final = [name for name in MOVES if name != "assign"]


def status_of(state: str) -> str:
    """open or closed, from one of our ticket states."""
    return "open" if state in OPEN_STATES else "closed"


def notice(hours: int | None) -> str | None:
    return None if hours is None else f"Thời hạn xử lý: {hours} giờ kể từ khi phản ánh."


def service(code: str, name: str, hours: int | None) -> dict[str, Any]:
    """One category as an Open311 service."""
    words = (w.strip().lower() for w in re.split(r"[,()]", name))
    return {
        "service_code": code,
        "service_name": name,
        "description": " ".join(p for p in (f"{name}.", notice(hours)) if p),
        "metadata": False,
        "type": "realtime",
        "keywords": ", ".join(w for w in words if w),
        "group": None,
    }


def definition(code: str) -> dict[str, Any]:
    """A service definition: our services ask for nothing beyond the standard fields."""
    return {"service_code": code, "attributes": []}


def discovery(base_url: str) -> dict[str, Any]:
    return {
        "changeset": CHANGESET,
        "contact": CONTACT,
        "key_service": KEY_SERVICE,
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": base_url,
                "changeset": CHANGESET,
                "type": "production",
                "formats": sorted(MEDIA_TYPES.values()),
            }
        ],
    }


def receipt(request: Mapping[str, Any], lookup_code: str | None = None) -> dict[str, Any]:
    """The answer to a created request: its id, what to expect, and the code the citizen
    follows it with on the public lookup page (``/lookup``)."""
    notice = request["service_notice"]
    if lookup_code is not None:
        notice = f"{notice or ''} Mã tra cứu: {lookup_code} (tra cứu tại /lookup).".strip()
    return {
        "service_request_id": request["service_request_id"],
        "service_notice": notice,
        "account_id": None,
    }


def errors(status: int, description: str) -> list[dict[str, Any]]:
    return [{"code": status, "description": description}]


async def services(conn: Conn) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT code, name_vi, default_deadline_hours FROM categories ORDER BY code"
    )
    return [service(c, n, h) for c, n, h in await cur.fetchall()]


async def find_service(conn: Conn, code: str) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT code, name_vi, default_deadline_hours FROM categories WHERE code = %s", (code,)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"service_code {code!r} is not a service here (see services.json)")
    return service(*row)


# --- service requests -------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    """What GET requests asks for. ``ids`` overrides every other filter (as the spec says)."""

    ids: tuple[int, ...] | None
    codes: tuple[str, ...] | None
    states: tuple[str, ...]
    start: datetime
    end: datetime | None
    limit: int = MAX_REQUESTS


_REQUESTS = """
SELECT t.id, t.state, t.category, c.name_vi, c.default_deadline_hours, f.description,
       a.name_vi, t.opened_at, t.updated_at, t.closed_at, t.deadline_at, f.address,
       t.lat, t.lon, f.media_urls,
       (SELECT e.note FROM ticket_events e
         WHERE e.ticket_id = t.id AND e.action = ANY(%(public)s)
         ORDER BY e.id DESC LIMIT 1),
       (SELECT m.id FROM media m WHERE m.report_id = f.id ORDER BY m.position LIMIT 1)
FROM tickets t
JOIN field_reports f ON f.id = t.report_id
LEFT JOIN categories c ON c.code = t.category
LEFT JOIN agencies a ON a.code = t.agency
"""


def _moment(value: datetime | None, zone: tzinfo) -> str | None:
    return None if value is None else value.astimezone(zone).isoformat(timespec="seconds")


def request_of(row: Sequence[Any], zone: tzinfo) -> dict[str, Any]:
    """A ticket row (as selected by ``_REQUESTS``) as an Open311 service request."""
    (ticket, state, code, name, hours, text, agency, opened, updated, closed, deadline) = row[:11]
    address, lat, lon, media, note, photo = row[11:]
    status = status_of(state)
    return {
        "service_request_id": str(ticket),
        "status": status,
        "status_notes": note or None,
        "service_name": name,
        "service_code": code,
        "description": text[:MAX_DESCRIPTION] if text else None,
        "agency_responsible": agency,
        "service_notice": notice(hours),
        "requested_datetime": _moment(opened, zone),
        "updated_datetime": _moment(closed if status == "closed" and closed else updated, zone),
        "expected_datetime": _moment(deadline, zone),
        "address": address,
        "address_id": None,
        "zipcode": None,
        "lat": lat,
        "long": lon,
        # A photo uploaded here: its path on this server (the API makes it absolute).
        "media_url": f"/v1/media/{photo}" if photo else (media[0] if media else None),
    }


async def requests_by_id(conn: Conn, ids: Sequence[int], zone: tzinfo) -> list[dict[str, Any]]:
    cur = await conn.execute(
        _REQUESTS + "WHERE t.id = ANY(%(ids)s) ORDER BY t.id LIMIT %(limit)s",
        {"ids": list(ids), "limit": MAX_REQUESTS, "public": _PUBLIC_NOTES},
    )
    return [request_of(row, zone) for row in await cur.fetchall()]


async def find_requests(conn: Conn, search: Search, zone: tzinfo) -> list[dict[str, Any]]:
    if search.ids is not None:
        return await requests_by_id(conn, search.ids, zone)
    cur = await conn.execute(
        _REQUESTS
        + """WHERE t.opened_at >= %(start)s
               AND (%(end)s::timestamptz IS NULL OR t.opened_at <= %(end)s)
               AND (%(codes)s::text[] IS NULL OR t.category = ANY(%(codes)s))
               AND t.state = ANY(%(states)s)
             ORDER BY t.opened_at DESC, t.id DESC LIMIT %(limit)s""",
        {
            "start": search.start,
            "end": search.end,
            "codes": None if search.codes is None else list(search.codes),
            "states": list(search.states),
            "limit": search.limit,
            "public": _PUBLIC_NOTES,
        },
    )
    return [request_of(row, zone) for row in await cur.fetchall()]


async def find_request(conn: Conn, request_id: str, zone: tzinfo) -> dict[str, Any]:
    found = []
    if ID_PATTERN.fullmatch(request_id):
        found = await requests_by_id(conn, (int(request_id),), zone)
    if not found:
        raise NotFound(f"no service request {request_id!r}")
    return found[0]


async def ticket_of_report(conn: Conn, source: str, external_id: str) -> int:
    """The ticket a stored field report opened or joined."""
    cur = await conn.execute(
        "SELECT ticket_id FROM field_reports WHERE source = %s AND external_id = %s",
        (source, external_id),
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(f"field report {source}/{external_id} was stored without a ticket")
    return int(row[0])


# --- a posted form → a field report ---------------------------------------------------------


# --- XML ------------------------------------------------------------------------------------


def to_xml(root: str, value: Any) -> bytes:
    """The spec's XML: lists take their item tag from the parent (services → service)."""
    element = ET.Element(root)
    _fill(element, value)
    document: bytes = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return document


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _fill(ET.SubElement(element, key), item)
    elif isinstance(value, list | tuple):
        tag = _ITEM_TAGS[element.tag]
        for item in value:
            _fill(ET.SubElement(element, tag), item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        # Control characters are legal in JSON strings but not in XML 1.0.
        element.text = _NOT_XML.sub("", str(value))
