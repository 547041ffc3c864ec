"""``ioc import requests``: historical 311 service requests brought in as tickets, with their
own created, due and closed times.

History cannot go through the live action API, which stamps every action with the time it
is taken. ``import_history`` writes each request as what the live path would have left behind
(a field report, a ticket with its SLA columns filled in, and its history: opened, then
resolved and closed when the source closed it) in one transaction, skipping requests
already imported, so running it twice changes nothing.

The reader knows the layout of Open Baltimore's "311 Customer Service Requests" export
(``SRType``, ``CreatedDate``, ``DueDate``, ``CloseDate``, ``Agency``, …; local times as
``MM/DD/YYYY hh:mm:ss AM/PM``). Request types map to the platform's categories by their
prefix (``SW-`` solid waste → moi_truong, …); the city's agencies are kept as they are, as
agencies of their own (``bmore-solid-waste``, …).

Coordinates that are no real place (missing, placeholders on whole degrees such as 39, −77,
or far from the city) are treated alike: the ticket is placed at City Hall and its routing
says ``"location": "default"``.

Which calendar counts office time is the importer's choice, not the platform's: a US city's
history is counted on a US calendar (``us_calendar``: Monday to Friday 08:30–16:30 in
America/New_York, without the federal holidays), so its office-hour figures mean what they
would have meant there.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
import psycopg

from alerting.calendar import WorkingCalendar
from alerting.swap_days import SwapDays
from ioc.deadlines import DeadlineBook
from ioc.errors import InvalidInput

Conn = psycopg.AsyncConnection[Any]

BALTIMORE_ZONE: Final = "America/New_York"
BALTIMORE_SOURCE: Final = "baltimore-311"
# Baltimore City Hall: where requests without coordinates are placed (and said to be).
BALTIMORE_CENTRE: Final = (-76.6106, 39.2909)
# A point farther than this from the centre is not a place of the city's 311 service (the
# export's real points, some in the county around the city, are all within about 45 km).
BALTIMORE_REACH_KM: Final = 50.0
_TIME_FORMAT: Final = "%m/%d/%Y %I:%M:%S %p"
_REQUIRED: Final = ("ServiceRequestNum", "SRType", "CreatedDate", "SRStatus", "Agency")

# Request-type prefixes of Baltimore 311 → the platform's categories; anything else is "khac".
CATEGORY_OF_PREFIX: Final = {
    "SW": "moi_truong",  # solid waste: dirty streets and alleys, bulk trash, rats
    "HCD": "trat_tu_do_thi",  # housing and code enforcement: sanitation, vacant buildings
    "WW": "cap_thoat_nuoc",  # water and wastewater
    "TRS": "giao_thong",  # parking, abandoned vehicles
    "TRT": "giao_thong",  # traffic signals and signs
    "TTR": "giao_thong",  # towing
    "TR": "giao_thong",
    "TRC": "giao_thong",
    "TRA": "giao_thong",
    "TRM": "ha_tang",  # potholes, street repairs
    "TEC": "ha_tang",  # footways
    "DPW": "ha_tang",
    "BGE": "chieu_sang",  # street lights (the power company)
    "FOR": "cay_xanh",  # forestry: trees, fallen limbs
    "RP": "cay_xanh",  # parks
    "BPD": "an_ninh_trat_tu",
    "HLTH": "an_toan_thuc_pham",
}


@dataclass(frozen=True)
class HistoricRequest:
    """One service request as the source recorded it, mapped to the platform's codes."""

    external_id: str
    category: str
    agency: str
    agency_name: str
    request_type: str
    status: str
    created: datetime
    due: datetime | None
    closed: datetime | None
    lon: float | None
    lat: float | None
    address: str | None = None
    area: str | None = None  # the source's neighbourhood name

    @property
    def is_closed(self) -> bool:
        return self.closed is not None


@dataclass
class ReadResult:
    requests: list[HistoricRequest] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line N: why", rows left out
    placeholders: int = 0  # rows with coordinates that are no real place (kept, as unplaced)


def agency_code(name: str, prefix: str = "bmore-") -> str:
    """``Recreation & Parks`` → ``bmore-recreation-parks``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{prefix}{slug or 'unknown'}"


def category_of(request_type: str) -> str:
    prefix = request_type.split("-", 1)[0].strip().upper()
    return CATEGORY_OF_PREFIX.get(prefix, "khac")


def _when(text: str | None, zone: tzinfo) -> datetime | None:
    if text is None or not text.strip():
        return None
    return datetime.strptime(text.strip(), _TIME_FORMAT).replace(tzinfo=zone)


def _coordinate(text: str | None, low: float, high: float) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and low <= value <= high else None


def _km_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lon, lat) points."""
    lon1, lat1, lon2, lat2 = (math.radians(v) for v in (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def place_of(
    lon_text: str | None,
    lat_text: str | None,
    centre: tuple[float, float] = BALTIMORE_CENTRE,
    reach_km: float = BALTIMORE_REACH_KM,
) -> tuple[float, float] | None:
    """A request's (lon, lat), or None when the export gives no usable place.

    Not usable: a missing or unreadable coordinate (either one), a placeholder (both on whole
    degrees, such as 39, −77 or 0, 0: no real address in the city lies on one), or a point
    farther than ``reach_km`` from ``centre``.
    """
    lon, lat = _coordinate(lon_text, -180, 180), _coordinate(lat_text, -90, 90)
    if lon is None or lat is None:
        return None
    if lon.is_integer() and lat.is_integer():
        return None
    if _km_between((lon, lat), centre) > reach_km:
        return None
    return lon, lat


def read_baltimore_csv(path: Path, zone: str = BALTIMORE_ZONE) -> ReadResult:
    """Requests of an Open Baltimore 311 export; unusable rows are named in ``problems``."""
    local = ZoneInfo(zone)
    out = ReadResult()
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"{path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or ())]
        if missing:
            raise InvalidInput(
                f"{path}: not an Open Baltimore 311 export: no column {', '.join(missing)}; "
                f"columns are: {', '.join(reader.fieldnames or ())}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                created = _when(row["CreatedDate"], local)
                if created is None:
                    raise ValueError("CreatedDate is empty")
                agency_name = (row["Agency"] or "").strip() or "Unknown"
                request_type = (row["SRType"] or "").strip()
                place = place_of(row.get("Longitude"), row.get("Latitude"))
                if place is None and (row.get("Longitude") or "").strip():
                    out.placeholders += 1
                out.requests.append(
                    HistoricRequest(
                        external_id=row["ServiceRequestNum"].strip(),
                        category=category_of(request_type),
                        agency=agency_code(agency_name),
                        agency_name=agency_name,
                        request_type=request_type or "(no type)",
                        status=(row["SRStatus"] or "").strip(),
                        created=created,
                        due=_when(row.get("DueDate"), local),
                        closed=_when(row.get("CloseDate"), local),
                        lon=None if place is None else place[0],
                        lat=None if place is None else place[1],
                        address=(row.get("Address") or "").strip() or None,
                        area=(row.get("Neighborhood") or "").strip() or None,
                    )
                )
            except (ValueError, KeyError, AttributeError) as exc:
                out.problems.append(f"line {line}: {exc}")
    return out


def us_calendar(zone: str = BALTIMORE_ZONE) -> WorkingCalendar:
    """Office time for a US city: Monday–Friday 08:30–16:30, without the federal holidays."""
    return WorkingCalendar(
        tz=zone, office_hours=(("08:30", "16:30"),), swaps=SwapDays(), country="US"
    )


@dataclass(frozen=True)
class Imported:
    requests: int
    tickets: int
    already: int
    closed: int
    without_location: int

    def __str__(self) -> str:
        return (
            f"{self.tickets} tickets imported ({self.closed} closed) from {self.requests} "
            f"requests; {self.already} were already imported; {self.without_location} had no "
            "usable location and were placed at the default"
        )


def _state(request: HistoricRequest) -> str:
    if request.is_closed:
        return "closed"
    status = request.status.lower()
    if status.startswith("pending"):
        return "waiting"
    if status.startswith("in progress") or status.startswith("open"):
        return "in_progress"
    return "new"


def _ticket_row(
    r: HistoricRequest,
    report_id: int,
    ticket_id: int,
    book: DeadlineBook,
    place: tuple[float, float],
) -> tuple[Any, ...]:
    routing = {
        "how": "imported",
        "source_agency": r.agency_name,
        "source_type": r.request_type,
        "source_status": r.status,
        "jurisdiction_name": r.area,
        "rule": None,
        "location": "given" if r.lon is not None and r.lat is not None else "default",
    }
    resolved = r.closed
    working = None if resolved is None else book.working_used(r.created, resolved)
    result = None if resolved is None or r.due is None else book.result(resolved, r.due)
    allowed = None if r.due is None else max((r.due - r.created).total_seconds(), 0.0)
    return (
        ticket_id,
        report_id,
        r.category,
        _state(r),
        r.agency,
        msgspec.json.encode(routing).decode(),
        r.lon if r.lon is not None else place[0],
        r.lat if r.lat is not None else place[1],
        r.created,
        r.due,
        resolved or r.created,
        resolved,
        resolved,
        "calendar" if r.due is not None else None,
        allowed,
        working,
        result,
    )


async def import_history(
    conn: Conn,
    requests: Sequence[HistoricRequest],
    calendar: WorkingCalendar,
    source: str = BALTIMORE_SOURCE,
    place: tuple[float, float] = BALTIMORE_CENTRE,
) -> Imported:
    """Write the requests as tickets with their own times, in one transaction (idempotent).

    Office time (``resolution_working_s``) is counted on ``calendar``; the SLA result
    compares the close with the due time as the live clock does (early: closed on an earlier
    day). The time to a first response is not in the source and stays empty.
    """
    book = DeadlineBook(calendar)
    unique = list({r.external_id: r for r in requests}.values())
    agencies = {r.agency: r.agency_name for r in unique}
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO agencies (code, name_vi) SELECT * FROM unnest(%s::text[], %s::text[])"
            " ON CONFLICT (code) DO NOTHING",
            (list(agencies), list(agencies.values())),
        )
        cur = await conn.execute(
            "SELECT external_id FROM field_reports WHERE source = %s AND external_id = ANY(%s)",
            (source, [r.external_id for r in unique]),
        )
        done = {str(row[0]) for row in await cur.fetchall()}
        fresh = [r for r in unique if r.external_id not in done]
        if fresh:
            await _write(conn, fresh, book, source, place)
    return Imported(
        requests=len(requests),
        tickets=len(fresh),
        already=len(done),
        closed=sum(r.is_closed for r in fresh),
        without_location=sum(r.lon is None or r.lat is None for r in fresh),
    )


async def _write(
    conn: Conn,
    fresh: Sequence[HistoricRequest],
    book: DeadlineBook,
    source: str,
    place: tuple[float, float],
) -> None:
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY field_reports (source, external_id, category, description, lon, lat,"
            " occurred_at, address, received_at) FROM STDIN"
        ) as copy,
    ):
        for r in fresh:
            await copy.write_row(
                (
                    source,
                    r.external_id,
                    r.category,
                    r.request_type,
                    r.lon if r.lon is not None else place[0],
                    r.lat if r.lat is not None else place[1],
                    r.created,
                    r.address,
                    r.created,
                )
            )
    cur = await conn.execute(
        "SELECT external_id, id FROM field_reports WHERE source = %s AND external_id = ANY(%s)",
        (source, [r.external_id for r in fresh]),
    )
    report_ids = {str(e): int(i) for e, i in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT nextval(pg_get_serial_sequence('tickets', 'id')) FROM generate_series(1, %s)",
        (len(fresh),),
    )
    ticket_ids = [int(row[0]) for row in await cur.fetchall()]
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY tickets (id, report_id, category, state, agency, routing, lon, lat, opened_at,"
            " deadline_at, updated_at, resolved_at, closed_at, sla_unit, sla_allowed_s,"
            " resolution_working_s, sla_result) FROM STDIN"
        ) as copy,
    ):
        for r, ticket in zip(fresh, ticket_ids, strict=True):
            await copy.write_row(_ticket_row(r, report_ids[r.external_id], ticket, book, place))
    await conn.execute(
        "UPDATE field_reports f SET ticket_id = v.t FROM unnest(%s::bigint[], %s::bigint[])"
        " AS v(r, t) WHERE f.id = v.r",
        ([report_ids[r.external_id] for r in fresh], ticket_ids),
    )
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY ticket_events (ticket_id, at, actor, action, from_state, to_state, to_agency,"
            " note) FROM STDIN"
        ) as copy,
    ):
        for r, ticket in zip(fresh, ticket_ids, strict=True):
            for event in _history(r, ticket, source):
                await copy.write_row(event)


def _history(r: HistoricRequest, ticket: int, source: str) -> Iterable[tuple[Any, ...]]:
    """Opened; and when the source closed it, resolved and closed at the source's close time."""
    actor = f"import:{source}"
    yield (ticket, r.created, actor, "open", None, "new", r.agency, f"imported: {r.request_type}")
    if r.closed is not None:
        note = f"closed in the source system (status {r.status!r})"
        yield (ticket, r.closed, actor, "resolve", "new", "resolved", r.agency, note)
        yield (ticket, r.closed, actor, "close", "resolved", "closed", r.agency, note)
