"""What Open311 clients send: search parameters and the urlencoded form of a new request,
checked field by field."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Final
from urllib.parse import parse_qsl

import msgspec

from ioc.errors import InvalidInput, MalformedBody
from ioc.events.kinds import FieldReport
from ioc.events.validation import explain
from ioc.interop.open311 import (
    ID_PATTERN,
    MAX_DESCRIPTION,
    MAX_REQUESTS,
    STATUSES,
    WINDOW,
    Search,
)
from ioc.params import text

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
# A "+07:00" offset sent unencoded in a query string arrives as " 07:00".
_LOST_PLUS = re.compile(r"(T[0-9:.]+) ([0-9]{2}(?::?[0-9]{2})?)$")


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
        bad = [i for i in ids if not ID_PATTERN.fullmatch(i)]
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


def parse_form(body: bytes | bytearray) -> dict[str, str]:
    """An application/x-www-form-urlencoded body; blank fields count as absent."""
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=False, errors="strict")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"the form is not UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise MalformedBody(f"the form cannot be read: {exc}") from None
    return checked_fields(pairs)


def checked_fields(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Form fields whose names and values the database can hold; blank ones count as absent."""
    for name, value in pairs:
        text(name, name)
        text(name, value)
    return {k: v for k, v in reversed(pairs) if v}  # the first of a repeated field wins


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
