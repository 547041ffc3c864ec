"""Open311 GeoReport v2: our categories as services, our tickets as service requests.

No web framework here: the router (``ioc.api.open311``) reads the request and calls these.
The reporter's contact details go in (a form becomes a field report) but never come out.
"""

from __future__ import annotations

import math
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
import psycopg

from ioc.errors import InvalidInput, MalformedBody, NotFound
from ioc.events.kinds import FieldReport
from ioc.events.validation import explain
from ioc.params import text
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

# Our field names → the Open311 form fields they come from, for error messages.
_FORM_NAMES: Final = {
    "category": "service_code",
    "lon": "long",
    "lat": "lat",
    "description": "description",
    "address": "address_string",
    "media_urls": "media_url",
    "reporter.name": "first_name and last_name",
    "reporter.phone": "phone",
    "reporter.email": "email",
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
# A "+07:00" offset sent unencoded in a query string arrives as " 07:00".
_LOST_PLUS = re.compile(r"(T[0-9:.]+) ([0-9]{2}(?::?[0-9]{2})?)$")
_ID = re.compile(r"[0-9]{1,18}")
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


def receipt(request: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to a created request: its id and what to expect."""
    return {
        "service_request_id": request["service_request_id"],
        "service_notice": request["service_notice"],
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
         ORDER BY e.id DESC LIMIT 1)
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
    address, lat, lon, media, note = row[11:]
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
        "media_url": media[0] if media else None,
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
    if _ID.fullmatch(request_id):
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


def _invalid(name: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{name}: {reason}", [{"field": name, "reason": reason}])


def _time(params: Mapping[str, str], name: str, zone: tzinfo) -> datetime | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(_LOST_PLUS.sub(r"\1+\2", text))
    except ValueError:
        raise _invalid(
            name, f"{text!r} is not an ISO 8601 date-time, e.g. 2025-08-01T07:45:00+07:00"
        ) from None
    if not 1970 <= value.year <= 9000:
        raise _invalid(name, f"{text!r} is out of range")
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _listed(params: Mapping[str, str], name: str) -> list[str]:
    return [p.strip() for p in params.get(name, "").split(",") if p.strip()]


def parse_search(
    params: Mapping[str, str], now: datetime, zone: tzinfo, known: Collection[str]
) -> Search:
    """The filters of GET requests; raises InvalidInput naming the parameter at fault."""
    ids = _listed(params, "service_request_id")
    if ids:
        bad = [i for i in ids if not _ID.fullmatch(i)]
        if bad:
            raise _invalid("service_request_id", f"{bad[0]!r} is not a service request id")
        if len(ids) > MAX_REQUESTS:
            raise _invalid(
                "service_request_id", f"{len(ids)} ids; at most {MAX_REQUESTS} per request"
            )
        return Search(tuple(int(i) for i in ids), None, (), now - WINDOW, None)
    codes = _listed(params, "service_code")
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise _invalid(
            "service_code",
            f"{unknown[0]!r} is not a service here; accepted: {', '.join(sorted(known))}",
        )
    statuses = _listed(params, "status")
    wrong = [s for s in statuses if s not in STATUSES]
    if wrong:
        raise _invalid("status", f"{wrong[0]!r} is not a status; accepted: open, closed")
    states = sorted({s for name in statuses or STATUSES for s in STATUSES[name]})
    start, end = _time(params, "start_date", zone), _time(params, "end_date", zone)
    if start is None and end is None:
        start = now - WINDOW  # the default window: the last 90 days, open-ended for clock skew
    elif start is None:
        assert end is not None
        start = end - WINDOW
    elif end is None:
        end = start + WINDOW
    elif end < start:
        raise _invalid("end_date", f"{end.isoformat()} is before start_date {start.isoformat()}")
    elif end - start > WINDOW:
        raise _invalid(
            "end_date",
            f"start_date to end_date spans {(end - start).days} days; at most {WINDOW.days}",
        )
    return Search(None, tuple(codes) or None, tuple(states), start, end)


# --- a posted form → a field report ---------------------------------------------------------


def parse_form(body: bytes | bytearray) -> dict[str, str]:
    """An application/x-www-form-urlencoded body; blank fields count as absent."""
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=False, errors="strict")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"the form is not UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise MalformedBody(f"the form cannot be read: {exc}") from None
    for name, value in pairs:
        text(name, name)
        text(name, value)
    return dict(reversed(pairs))  # the first of a repeated field wins


def new_external_id() -> str:
    return f"open311-{uuid.uuid4().hex}"


def _coordinate(form: Mapping[str, str], name: str, limit: float) -> float | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _invalid(name, f"{text!r} is not a number (WGS 84 degrees)")
    if not -limit <= value <= limit:
        raise _invalid(name, f"{value} must be between {-limit:g} and {limit:g}")
    return value


def report_of(
    form: Mapping[str, str], external_id: str, now: datetime, known: Collection[str]
) -> FieldReport:
    """A posted Open311 request as a field report; raises InvalidInput naming the form field."""
    code = form.get("service_code", "").strip()
    if not code:
        raise _invalid("service_code", "required (see services.json)")
    if code not in known:
        raise _invalid(
            "service_code", f"{code!r} is not a service here; accepted: {', '.join(sorted(known))}"
        )
    lat, lon = _coordinate(form, "lat", 90), _coordinate(form, "long", 180)
    if lat is None or lon is None:
        if lat is not None or lon is not None:
            raise _invalid("long" if lon is None else "lat", "give both lat and long")
        if form.get("address_string"):
            raise _invalid(
                "lat", "lat and long are required: address_string alone cannot be placed on the map"
            )
        raise _invalid("lat", "lat and long are required (WGS 84 degrees)")
    description = form.get("description", "")
    if len(description) > MAX_DESCRIPTION:
        raise _invalid("description", f"{len(description)} characters; at most {MAX_DESCRIPTION}")
    name = " ".join(form.get(p, "").strip() for p in ("first_name", "last_name")).strip() or None
    contact = {"name": name, "phone": form.get("phone"), "email": form.get("email")}
    data = {
        "external_id": external_id,
        "category": code,
        "description": description,
        "lon": lon,
        "lat": lat,
        "occurred_at": now,
        "address": form.get("address_string"),
        "reporter": contact if any(contact.values()) else None,
        "media_urls": [form["media_url"]] if "media_url" in form else [],
    }
    try:
        return msgspec.convert(data, FieldReport)
    except msgspec.ValidationError as exc:
        field, reason = explain(exc)
        ours = (field or "").split("[", 1)[0]
        raise _invalid(_FORM_NAMES.get(ours, ours or "form"), reason) from None


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
