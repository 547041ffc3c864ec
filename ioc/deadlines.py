"""Deadline policies and the arithmetic of an SLA clock, in calendar or office time.

In ``ioc`` because deadlines are set at intake and clocks move with each ticket action, inside
the core's transactions; the alert engine in ``alerting`` reads them.

A policy says how long a subject may take: calendar hours, working hours or working days.
Office time comes from an `OfficeTime` (the Vietnamese working calendar in
``alerting.calendar`` is one, wired in by the app factory); this module only combines it.

A clock counts from its start, stands still while paused (waiting for the citizen), and
stops when the work is finished. Because counted time is additive, a deadline with closed
pauses is ``add(start, allowed + paused)``, and the time used is ``between(start, end) - paused``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final, Literal, Protocol

import psycopg

UNITS: Final = ("calendar_hours", "working_hours", "working_days")
Unit = Literal["calendar_hours", "working_hours", "working_days"]
Counting = Literal["calendar", "working"]
Result = Literal["early", "on_time", "late"]


class OfficeTime(Protocol):
    """Office time on working days (``alerting.calendar.WorkingCalendar`` provides it)."""

    @property
    def tz(self) -> tzinfo: ...

    def add(self, start: datetime, seconds: float) -> datetime: ...

    def between(self, a: datetime, b: datetime) -> float: ...

    def add_working_days(self, start: datetime, days: int) -> datetime: ...


@dataclass(frozen=True)
class Policy:
    unit: Unit
    amount: float


@dataclass(frozen=True)
class Plan:
    """A clock's budget: how time counts, how much is allowed, and the two instants that matter."""

    counting: Counting
    allowed_s: float
    deadline_at: datetime
    due_soon_at: datetime


class DeadlineBook:
    """The policies in force and the office calendar they count in."""

    def __init__(
        self,
        office: OfficeTime,
        due_soon_fraction: float = 0.75,
        ticket_policies: Mapping[str, Policy] | None = None,
        dossier_policies: Mapping[str, Policy] | None = None,
        category_hours: Mapping[str, int] | None = None,
    ) -> None:
        self.office = office
        self.due_soon_fraction = due_soon_fraction
        self.ticket_policies = dict(ticket_policies or {})
        self.dossier_policies = dict(dossier_policies or {})
        self.category_hours = dict(category_hours or {})

    def warm(self, now: datetime) -> None:
        """Plan one clock of each ticket policy now, so that the office calendar's year is
        built at start-up rather than inside the first report's request."""
        for category in (*self.ticket_policies, *self.category_hours):
            self.ticket_plan(category, now)

    # -- plans ------------------------------------------------------------------------------

    def ticket_plan(self, category: str, start: datetime) -> Plan | None:
        """A new ticket's clock: its category's policy, else the category's default hours."""
        policy = self.ticket_policies.get(category)
        if policy is None:
            hours = self.category_hours.get(category)
            if not hours:
                return None
            policy = Policy("calendar_hours", hours)
        return self.plan(policy, start)

    def dossier_plan(self, procedure_code: str, accepted_at: datetime) -> Plan | None:
        policy = self.dossier_policies.get(procedure_code)
        return None if policy is None else self.plan(policy, accepted_at)

    def plan(self, policy: Policy, start: datetime) -> Plan:
        if policy.unit == "calendar_hours":
            return self._plan("calendar", start, policy.amount * 3600)
        if policy.unit == "working_hours":
            return self._plan("working", start, policy.amount * 3600)
        deadline = self.office.add_working_days(start, int(policy.amount))
        return self.plan_until("working", start, deadline)

    def plan_until(self, counting: Counting, start: datetime, deadline: datetime) -> Plan:
        """A clock whose deadline is given (a dossier's appointment date)."""
        allowed = max(self.elapsed(counting, start, deadline), 0.0)
        due_soon = self.add(counting, start, allowed * self.due_soon_fraction)
        return Plan(counting, allowed, deadline, min(due_soon, deadline))

    def _plan(self, counting: Counting, start: datetime, allowed: float) -> Plan:
        return Plan(
            counting,
            allowed,
            self.add(counting, start, allowed),
            self.add(counting, start, allowed * self.due_soon_fraction),
        )

    def resumed(
        self,
        counting: Counting,
        allowed_s: float,
        deadline: datetime,
        paused_at: datetime,
        now: datetime,
    ) -> tuple[datetime, datetime]:
        """(deadline, due soon) after a pause from ``paused_at`` to ``now``: the time left is kept."""
        left = self.elapsed(counting, paused_at, deadline)
        if left <= 0:  # paused when already overdue: no time is given back
            return deadline, min(deadline, now)
        new_deadline = self.add(counting, now, left)
        warn_left = allowed_s * (1 - self.due_soon_fraction)
        due_soon = self.add(counting, now, left - warn_left) if left > warn_left else now
        return new_deadline, due_soon

    # -- counting ---------------------------------------------------------------------------

    def add(self, counting: Counting, start: datetime, seconds: float) -> datetime:
        if counting == "calendar":
            return start + timedelta(seconds=seconds)
        return self.office.add(start, max(seconds, 0.0))

    def elapsed(self, counting: Counting, a: datetime, b: datetime) -> float:
        if counting == "calendar":
            return max((b - a).total_seconds(), 0.0)
        return self.office.between(a, b)

    def working_used(
        self, start: datetime, end: datetime, pauses: Iterable[tuple[datetime, datetime]] = ()
    ) -> float:
        """Office seconds from ``start`` to ``end``, less the office time of the pauses."""
        paused = sum(self.office.between(max(a, start), min(b, end)) for a, b in pauses)
        return max(self.office.between(start, end) - paused, 0.0)

    def result(self, finished: datetime, deadline: datetime) -> Result:
        """Early: done on a day before the deadline's day; on time: by the deadline; else late."""
        if finished > deadline:
            return "late"
        zone = self.office.tz
        if finished.astimezone(zone).date() < deadline.astimezone(zone).date():
            return "early"
        return "on_time"


def pauses_of(events: Iterable[tuple[datetime, bool]]) -> list[tuple[datetime, datetime | None]]:
    """Pause spans from (time, pausing?) marks in time order; the last may still be open."""
    spans: list[tuple[datetime, datetime | None]] = []
    start: datetime | None = None
    for at, pausing in events:
        if pausing and start is None:
            start = at
        elif not pausing and start is not None:
            spans.append((start, at))
            start = None
    if start is not None:
        spans.append((start, None))
    return spans


async def load_policies(
    conn: psycopg.AsyncConnection[Any],
) -> tuple[dict[str, Policy], dict[str, Policy]]:
    """(ticket policies by category, dossier policies by procedure code)."""
    cur = await conn.execute("SELECT subject, key, unit, amount FROM deadline_policies")
    tickets: dict[str, Policy] = {}
    dossiers: dict[str, Policy] = {}
    for subject, key, unit, amount in await cur.fetchall():
        (tickets if subject == "ticket" else dossiers)[str(key)] = Policy(unit, float(amount))
    return tickets, dossiers
