"""Three months of worked history for ``ioc demo``, so the leaders' review shows real figures on
the first run rather than zeros and dashes.

Field reports spread over the working hours of the last 91 days go through the ingest batch path
(validated, routed, deduplicated, deadlines from the deadline policies and the working-day
calendar), and the demo's named officials then work them: one official of the agency assigns
each ticket to a colleague, who starts and resolves it early, on time or late (and the first
often closes it). Those moves are written as the platform's own actions would leave them (the
same history lines, actor by name, and the same SLA clock figures from the same ``DeadlineBook``),
but in one set-based UPDATE and one COPY instead of thousands of single transactions: a few
seconds in all. Dossiers (``ingest.demo_dossiers``) go through every channel the platform
accepts. Citizens' ratings follow (``rating_events``) where the platform knows their events.

Seeding happens once per database: a database that holds this source's reports is left as is.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, get_args

import msgspec
import psycopg

from ingest import sim_profiles as profiles
from ingest.demo_dossiers import DOSSIERS_PER_DAY, SOURCE, dossier_lifecycles
from ioc.alerts.records import resolve_alerts
from ioc.auth import Principal, Role
from ioc.deadlines import DeadlineBook, OfficeTime
from ioc.events.kinds import KINDS, DossierEventName
from ioc.platform import Platform

Conn = psycopg.AsyncConnection[Any]
Event = dict[str, Any]

DAYS: Final = 91
REPORTS_PER_DAY: Final = 22  # per working day, on average
_BATCH: Final = 5000
_SEEDER = Principal(None, "", Role.ADMIN, label="ioc demo history")
# (share, fraction of the time allowed at which the work is done): early, on time, late.
_FATES: Final = ((0.45, 0.15, 0.6), (0.37, 0.7, 0.98), (0.18, 1.1, 2.6))
_RESOLUTIONS: Final = (
    "Đã xử lý xong tại hiện trường.",
    "Đã phối hợp với tổ dân phố khắc phục.",
    "Đã kiểm tra, xử lý và báo cáo kết quả.",
)


@dataclass(frozen=True)
class Official:
    login: str
    name: str
    agency: str

    @property
    def actor(self) -> str:
        """How the ticket history names an official (as ``ioc.tickets.actions.actor_of``)."""
        return f"{self.name} ({self.login})"


@dataclass
class Seeded:
    """What the seeding made."""

    reports: int = 0
    worked: int = 0
    actions: int = 0
    dossiers: int = 0
    ratings: int = 0
    skipped: bool = False
    # (report id, when resolved, late?): what citizens rate
    resolved: list[tuple[str, datetime, bool]] = field(default_factory=list, repr=False)


@dataclass
class _Work:
    """One ticket's worked history: its history lines and its final columns."""

    ticket: int
    lines: list[tuple[Any, ...]]
    columns: dict[str, Any]


def working_moments(
    office: OfficeTime, start: datetime, end: datetime, per_day: float, rng: random.Random
) -> list[datetime]:
    """Instants in office hours between ``start`` and ``end`` (about ``per_day`` on each
    working day, none on weekends and holidays), in order."""
    zone = office.tz
    day = start.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    found: list[datetime] = []
    while day < end:
        following = (day + timedelta(days=1, hours=2)).replace(hour=0)  # DST-proof next midnight
        open_s = office.between(day, following)
        if open_s > 0:
            for _ in range(max(0, round(rng.gauss(per_day, per_day**0.5)))):
                at = office.add(day, rng.uniform(0, open_s))
                if start <= at < end:
                    found.append(at)
        day = following
    return sorted(found)


async def officials_by_agency(conn: Conn) -> dict[str, list[Official]]:
    cur = await conn.execute(
        "SELECT login, name, agency FROM users WHERE role = 'agency' AND disabled_at IS NULL"
        " ORDER BY login"
    )
    found: dict[str, list[Official]] = {}
    for login, name, agency in await cur.fetchall():
        found.setdefault(str(agency), []).append(Official(str(login), str(name), str(agency)))
    return found


async def _places(conn: Conn) -> list[tuple[float, float]]:
    """The middle of each ward's box: reports drawn around them land in a ward and get routed."""
    cur = await conn.execute(
        "SELECT (min_lon + max_lon) / 2, (min_lat + max_lat) / 2 FROM jurisdictions"
    )
    return [(float(x), float(y)) for x, y in await cur.fetchall()]


def field_reports(
    moments: Sequence[datetime], places: Sequence[tuple[float, float]], rng: random.Random
) -> list[Event]:
    """Plausible reports at the given moments (fictitious reporters, like the simulator's)."""
    categories = list(profiles.CATEGORY_WEIGHTS)
    weights = list(profiles.CATEGORY_WEIGHTS.values())
    reports = []
    for n, at in enumerate(moments, 1):
        category = rng.choices(categories, weights=weights)[0]
        street = rng.choice(profiles.STREETS)
        if places:
            lon, lat = rng.choice(places)
            lon, lat = round(lon + rng.gauss(0, 0.002), 6), round(lat + rng.gauss(0, 0.002), 6)
        else:
            lon, lat = profiles.uniform_point(rng, profiles.HUE_BBOX, margin=0.1)
        report: Event = {
            "kind": "field_report",
            "source": SOURCE,
            "external_id": f"hist-fr-{n:06d}",
            "category": category,
            "description": rng.choice(profiles.DESCRIPTIONS[category]).format(street=street),
            "lon": lon,
            "lat": lat,
            "occurred_at": at.isoformat(),
        }
        if rng.random() < 0.5:
            report["reporter"] = {"name": "Người dân", "phone": f"0900000{rng.randint(0, 999):03d}"}
        reports.append(report)
    return reports


def plan_work(
    ticket: tuple[int, str, datetime, datetime | None],
    officials: Sequence[Official],
    book: DeadlineBook,
    now: datetime,
    rng: random.Random,
) -> _Work:
    """The moves officials make on one ticket, early, on time or late, up to ``now``."""
    ticket_id, agency, opened, deadline = ticket
    office = book.office
    lead, worker = rng.sample(list(officials), 2) if len(officials) > 1 else [officials[0]] * 2
    assigned = office.add(opened, rng.uniform(0.1, 4) * 3600)
    started = office.add(assigned, rng.uniform(0.1, 2) * 3600)
    if deadline is not None:
        allowed = office.between(opened, deadline)
        draw, fate = rng.random(), _FATES[-1]
        for candidate in _FATES:
            if draw < candidate[0]:
                fate = candidate
                break
            draw -= candidate[0]
        spent = max(rng.uniform(fate[1], fate[2]) * allowed, office.between(opened, started) + 600)
        resolved = office.add(opened, spent)
    else:
        resolved = office.add(started, rng.uniform(2, 30) * 3600)
    closed = office.add(resolved, rng.uniform(1, 16) * 3600) if rng.random() < 0.6 else None
    moves = [
        (assigned, lead, "assign", "new", "assigned", f"assignee: {worker.name} ({worker.login})"),
        (started, worker, "start", "assigned", "in_progress", ""),
        (resolved, worker, "resolve", "in_progress", "resolved", rng.choice(_RESOLUTIONS)),
    ]
    if closed is not None:
        moves.append((closed, lead, "close", "resolved", "closed", ""))
    done = [m for m in moves if m[0] <= now]
    lines = [
        (ticket_id, at, who.actor, action, before, after, agency, agency, note)
        for at, who, action, before, after, note in done
    ]
    last = done[-1] if done else None
    finished = resolved <= now
    columns: dict[str, Any] = {
        "state": last[4] if last else "new",
        "assignee": worker.login if last else None,
        "updated_at": last[0] if last else None,
        "first_response_at": assigned if last else None,
        "response_working_s": office.between(opened, assigned) if last else None,
        "resolved_at": resolved if finished else None,
        "resolution_working_s": book.working_used(opened, resolved) if finished else None,
        "sla_result": book.result(resolved, deadline) if finished and deadline else None,
        "closed_at": closed if closed is not None and closed <= now else None,
        "stopped": finished,
    }
    return _Work(ticket_id, lines, columns)


async def _new_tickets(conn: Conn) -> list[tuple[int, str, datetime, datetime | None]]:
    cur = await conn.execute(
        """SELECT t.id, t.agency, t.opened_at, t.deadline_at FROM tickets t
           JOIN field_reports f ON f.id = t.report_id
           WHERE f.source = %s AND t.state = 'new' AND t.agency IS NOT NULL ORDER BY t.id""",
        (SOURCE,),
    )
    return [(int(i), str(a), o, d) for i, a, o, d in await cur.fetchall()]


_COLUMNS: Final = (
    ("state", "text"),
    ("assignee", "text"),
    ("updated_at", "timestamptz"),
    ("first_response_at", "timestamptz"),
    ("response_working_s", "float8"),
    ("resolved_at", "timestamptz"),
    ("resolution_working_s", "float8"),
    ("sla_result", "text"),
    ("closed_at", "timestamptz"),
    ("stopped", "boolean"),
)


async def write_work(conn: Conn, works: Sequence[_Work], now: datetime) -> None:
    """The worked tickets' final columns in one UPDATE and their history lines in one COPY."""
    works = [w for w in works if w.lines]
    if not works:
        return
    arrays = [[w.ticket for w in works]] + [[w.columns[c] for w in works] for c, _ in _COLUMNS]
    unnest = ", ".join(f"%s::{kind}[]" for _, kind in [("id", "bigint"), *_COLUMNS])
    names = ", ".join(["id", *(c for c, _ in _COLUMNS)])
    async with conn.transaction():
        await conn.execute(
            f"""UPDATE tickets t SET state = v.state, assignee = v.assignee,
                  updated_at = v.updated_at, last_acted_at = v.updated_at,
                  first_response_at = v.first_response_at,
                  response_working_s = v.response_working_s, resolved_at = v.resolved_at,
                  resolution_working_s = v.resolution_working_s, sla_result = v.sla_result,
                  closed_at = v.closed_at
                FROM unnest({unnest}) AS v ({names})
                WHERE t.id = v.id""",
            arrays,
        )
        await conn.execute(  # the finished tickets' engine clocks stop (migration 0024)
            """UPDATE ticket_clocks SET sla_stage = NULL, next_check_at = NULL
               WHERE ticket_id = ANY(%s::bigint[])""",
            ([w.ticket for w in works if w.columns["stopped"]],),
        )
        async with (
            conn.cursor() as cur,
            cur.copy(
                "COPY ticket_events (ticket_id, at, actor, action, from_state, to_state,"
                " from_agency, to_agency, note) FROM STDIN"
            ) as copy,
        ):
            for work in works:
                for line in work.lines:
                    await copy.write_row(line)
        # Alerts the SLA engine may have raised on these tickets while they were being seeded.
        stopped = [str(w.ticket) for w in works if w.columns["stopped"]]
        await resolve_alerts(conn, "ticket", stopped, now, "subject_closed", rule="deadline")


async def post(platform: Platform, events: Iterable[Event]) -> int:
    """Through the ingest batch path, in batches; the number accepted."""
    pending = list(events)
    size = min(_BATCH, platform.settings.max_batch_events)
    accepted = 0
    for first in range(0, len(pending), size):
        body = b"\n".join(msgspec.json.encode(e) for e in pending[first : first + size])
        result = await platform.intake.batch(body, "application/x-ndjson", _SEEDER)
        if result.rejected:
            raise RuntimeError(f"demo history refused: {result.rejected[0].as_dict()}")
        accepted += result.accepted
    return accepted


def rating_events(
    resolved: Sequence[tuple[str, datetime, bool]],
    finished_dossiers: Sequence[tuple[Event, datetime]],
    now: datetime,
    rng: random.Random,
) -> list[Event]:
    """Citizens' ratings after the result, in the shape of the ``feedback`` event (field
    reports) and the ``rated`` dossier event: mostly satisfied when the work was in time
    (about nine in ten), much less when it was late."""
    events: list[Event] = []
    for report, at, late in resolved:
        rated = at + timedelta(hours=rng.uniform(1, 72))
        if rng.random() < 0.55 and rated <= now:
            events.append(
                {
                    "kind": "feedback",
                    "source": SOURCE,
                    "external_id": f"{report}-rating",
                    "report_id": report,
                    "rating": _score(late, rng),
                    "rated_at": rated.isoformat(),
                }
            )
    for last, at in finished_dossiers:
        late = at > datetime.fromisoformat(str(last["appointment_at"]))
        rated = at + timedelta(hours=rng.uniform(1, 72))
        if rng.random() < 0.4 and rated <= now:
            rating = {"event": "rated", "at": rated.isoformat(), "rating": _score(late, rng)}
            external = f"{last['dossier_id']}-rated"
            events.append({**last, **rating, "external_id": external})
    return events


def _score(late: bool, rng: random.Random) -> int:
    """A 1-5 score (4-5 count as satisfied)."""
    weights = (10, 15, 25, 30, 20) if late else (1, 2, 6, 36, 55)
    return rng.choices((1, 2, 3, 4, 5), weights=weights)[0]


def ratings_known() -> bool:
    """Whether this platform takes citizens' ratings (the ``feedback`` and ``rated`` events)."""
    return "feedback" in KINDS and "rated" in get_args(DossierEventName)


async def seed_history(platform: Platform, now: datetime, seed: int = 7) -> Seeded:
    """Seed three months of history ending at ``now`` (once per database)."""
    rng = random.Random(seed)
    async with platform.pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM field_reports WHERE source = %s LIMIT 1", (SOURCE,))
        if await cur.fetchone() is not None:
            return Seeded(skipped=True)
        officials = await officials_by_agency(conn)
        places = await _places(conn)
    start = now - timedelta(days=DAYS)
    seeded = Seeded()
    moments = working_moments(
        platform.office, start, now - timedelta(hours=2), REPORTS_PER_DAY, rng
    )
    reports = field_reports(moments, places, rng)
    seeded.reports = await post(platform, reports)
    async with platform.pool.connection() as conn:
        tickets = await _new_tickets(conn)
        works = [
            plan_work(t, officials[t[1]], platform.book, now, rng)
            for t in tickets
            if officials.get(t[1])
        ]
        await write_work(conn, works, now)
        cur = await conn.execute(
            "SELECT f.external_id, t.resolved_at, t.sla_result = 'late' FROM tickets t"
            " JOIN field_reports f ON f.id = t.report_id"
            " WHERE f.source = %s AND t.resolved_at IS NOT NULL",
            (SOURCE,),
        )
        seeded.resolved = [(str(e), at, bool(late)) for e, at, late in await cur.fetchall()]
    seeded.worked = sum(1 for w in works if w.lines)
    seeded.actions = sum(len(w.lines) for w in works)
    registrations = working_moments(
        platform.office, start, now - timedelta(days=1), DOSSIERS_PER_DAY, rng
    )
    dossier_events, finished = dossier_lifecycles(platform.office, registrations, now, rng)
    await post(platform, dossier_events)
    seeded.dossiers = len({e["dossier_id"] for e in dossier_events})
    if ratings_known():
        seeded.ratings = await post(platform, rating_events(seeded.resolved, finished, now, rng))
    return seeded
