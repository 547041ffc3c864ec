"""Vietnamese office time for SLA clocks (plain elapsed time is ``alerting.clockwork``).

`WorkingCalendar` counts only office hours on working days. A working day is a day
outside the weekend (Saturday, Sunday) that is not a public holiday, or a day an annual
notice declares worked. Holidays come from the `holidays` package, including the
compensatory days it adds when a holiday falls on a weekend (Labor Code 2019 art. 111(3)
grants them) and the swaps it already knows about; the notices in `SwapDays` are laid on
top and win over it.

Office time is local wall-clock time in the calendar's zone. Asia/Ho_Chi_Minh has no
daylight saving time, so wall-clock and elapsed office time are the same there.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path

import holidays

from alerting.clockwork import (
    DEFAULT_TIMEZONE,
    US,
    Pause,
    deadline_after,
    require_aware,
    time_used,
    to_micros,
    zone_of,
)
from alerting.office_hours import clock, micros_of, naive_time, office_intervals
from alerting.swap_days import SwapDays

__all__ = [
    "DEFAULT_OFFICE_HOURS",
    "DEFAULT_TIMEZONE",
    "Pause",
    "WorkingCalendar",
]

DEFAULT_OFFICE_HOURS: tuple[tuple[time, time], ...] = (
    (time(7, 30), time(11, 30)),
    (time(13, 30), time(17, 0)),
)

"""A span during which an SLA clock stands still; an end of None means "still paused"."""

_DAY_US = 86_400 * US


@dataclass(frozen=True, slots=True)
class _Year:
    """Working-day flags of one year, with prefix counts so spans cost O(1) per year."""

    first: int  # proleptic ordinal of 1 January
    working: bytes  # one 0/1 flag per day of the year
    before: tuple[int, ...]  # before[i] = working days among the first i days

    @property
    def days(self) -> int:
        return len(self.working)


class WorkingCalendar:
    """Office time on working days; immutable once built, safe to share between threads."""

    __slots__ = (
        "_close",
        "_country",
        "_day_us",
        "_flags",
        "_midnights",
        "_office",
        "_swaps",
        "_tz",
        "_weekend",
        "_years",
    )

    def __init__(
        self,
        *,
        tz: tzinfo | str = DEFAULT_TIMEZONE,
        office_hours: Sequence[tuple[time | str, time | str]] = DEFAULT_OFFICE_HOURS,
        swaps: SwapDays | None = None,
        country: str | None = "VN",
        weekend: Iterable[int] = (5, 6),
    ) -> None:
        """Build a calendar.

        `swaps` is the complete override table (use `for_vietnam` to get the built-in
        notices plus your own); `country` picks the `holidays` entity, None for none;
        `weekend` holds `date.weekday()` numbers.
        """
        self._tz = zone_of(tz)
        self._office = office_intervals(office_hours)
        self._day_us = sum(b - a for a, b in self._office)
        self._close = self._office[-1][1]
        self._weekend = frozenset(weekend)
        if not self._weekend <= set(range(7)) or len(self._weekend) == 7:
            raise ValueError(
                f"weekend is {sorted(self._weekend)}, must be weekday numbers 0-6 (Monday=0) "
                "leaving at least one working weekday"
            )
        self._swaps = swaps if swaps is not None else SwapDays()
        self._country = country
        # Filled lazily; the tables are a pure function of the settings above, so a
        # racing double build only wastes work.
        self._years: dict[int, _Year] = {}
        # Day by day, from the tables: whether it is a working day, and its local midnight
        # (a deadline is told from it, thousands of times a batch of tickets).
        self._flags: dict[int, bool] = {}
        self._midnights: dict[int, datetime] = {}

    @classmethod
    def for_vietnam(
        cls,
        *,
        tz: tzinfo | str = DEFAULT_TIMEZONE,
        office_hours: Sequence[tuple[time | str, time | str]] = DEFAULT_OFFICE_HOURS,
        swap_files: Iterable[str | Path] = (),
        extra_off_days: Iterable[date | str] = (),
        extra_worked_days: Iterable[date | str] = (),
        builtin_swaps: bool = True,
    ) -> WorkingCalendar:
        """The state-agency calendar: built-in notices, then each file in order, then the extras."""
        swaps = SwapDays.builtin() if builtin_swaps else SwapDays()
        for path in swap_files:
            swaps = swaps.overridden_by(SwapDays.load(path))
        swaps = swaps.overridden_by(SwapDays.of(off=extra_off_days, worked=extra_worked_days))
        return cls(tz=tz, office_hours=office_hours, swaps=swaps, country="VN")

    @classmethod
    def default(cls) -> WorkingCalendar:
        """A shared `for_vietnam()` calendar, so its year tables are built once per process."""
        return _default_calendar()

    @property
    def tz(self) -> tzinfo:
        return self._tz

    @property
    def office_hours(self) -> tuple[tuple[time, time], ...]:
        return tuple((clock(a), clock(b)) for a, b in self._office)

    @property
    def seconds_per_day(self) -> float:
        """Office seconds in one working day."""
        return self._day_us / US

    @property
    def swaps(self) -> SwapDays:
        return self._swaps

    def __repr__(self) -> str:
        hours = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in self.office_hours)
        return (
            f"WorkingCalendar(tz={str(self._tz)!r}, office_hours=[{hours}], "
            f"country={self._country!r}, {len(self._swaps.off)} off / "
            f"{len(self._swaps.worked)} worked override days)"
        )

    # -- days ---------------------------------------------------------------

    def is_working_day(self, d: date) -> bool:
        """Whether `d` is a working day; an aware datetime is read in the calendar's zone."""
        if isinstance(d, datetime):
            require_aware("d", d)
            d = d.astimezone(self._tz).date()
        return self._working(d.toordinal())

    def add_working_days(
        self, start: datetime, days: int, *, cutoff: time | None = None
    ) -> datetime:
        """Deadline of a dossier accepted at `start` with a processing time of `days` working days.

        The day of acceptance is not counted (Civil Code 2015 art. 147): day 1 is the
        first working day after it, and the deadline is the close of office hours on
        day `days`. A dossier accepted on a non-working day, or at or after the close of
        office hours (or at or after `cutoff`, for intake rules that end the day earlier),
        is deemed accepted on the next working day. Before opening and during lunch still
        count as that day. `days=0` gives the close of the day of acceptance.
        """
        if isinstance(days, bool) or not isinstance(days, int):
            raise TypeError(f"days must be an int, got {type(days).__name__}")
        if days < 0:
            raise ValueError(f"days is {days}, must be 0 or more")
        ordinal, now = self._local("start", start)
        last_intake = self._close if cutoff is None else micros_of(naive_time(cutoff, "cutoff"))
        if not self._working(ordinal) or now >= last_intake:
            ordinal = self._nth_after(ordinal, 1)
        due = self._nth_after(ordinal, days) if days else ordinal
        return self._at(due, self._close)

    # -- office time --------------------------------------------------------

    def add(self, start: datetime, seconds: float) -> datetime:
        """The earliest instant at which `seconds` of office time have run since `start`."""
        need = to_micros(seconds, "seconds")
        ordinal, now = self._local("start", start)
        if need == 0:
            return start.astimezone(self._tz)
        if self._working(ordinal):
            for a, b in self._office:
                if now < b:
                    begin = max(now, a)
                    if need <= b - begin:
                        return self._at(ordinal, begin + need)
                    need -= b - begin
        # Whole days are skipped by counting, not by walking: when `need` is an exact
        # multiple of a day, the answer is the close of the last day, not the next opening.
        full_days = (need - 1) // self._day_us
        ordinal = self._nth_after(ordinal, full_days + 1)
        need -= full_days * self._day_us
        for a, b in self._office:
            if need <= b - a:
                return self._at(ordinal, a + need)
            need -= b - a
        raise AssertionError("unreachable: the remainder is at most one working day")

    def between(self, a: datetime, b: datetime) -> float:
        """Office seconds from `a` to `b`; 0 if `b` is not after `a`."""
        first, since = self._local("a", a)
        last, until = self._local("b", b)
        if b <= a:
            return 0.0
        if first == last:
            micros = self._office_within(since, until) if self._working(first) else 0
        else:
            micros = self._count(first + 1, last) * self._day_us
            if self._working(first):
                micros += self._office_within(since, _DAY_US)
            if self._working(last):
                micros += self._office_within(0, until)
        return micros / US

    def used(self, start: datetime, end: datetime, pauses: Iterable[Pause] = ()) -> float:
        """Office seconds from `start` to `end`, leaving out the paused spans."""
        return time_used(self, start, end, pauses)

    def deadline(
        self, start: datetime, allowed_seconds: float, pauses: Iterable[Pause] = ()
    ) -> datetime | None:
        """When `allowed_seconds` of office time run out, pushed back by the pauses.

        None while an open-ended pause holds the clock before the time runs out. For a
        dossier, the budget is `between(accepted, add_working_days(accepted, n))`.
        """
        return deadline_after(self, start, allowed_seconds, pauses)

    # The names the SLA code reads best with; same behaviour as the Clockwork methods.

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """`add` in hours."""
        return self.add(start, hours * 3600)

    def working_seconds_between(self, a: datetime, b: datetime) -> float:
        """Alias of `between`."""
        return self.between(a, b)

    def working_seconds_used(
        self, start: datetime, end: datetime, pauses: Iterable[Pause] = ()
    ) -> float:
        """Alias of `used`."""
        return self.used(start, end, pauses)

    def deadline_with_pauses(
        self, start: datetime, allowed_working_seconds: float, pauses: Iterable[Pause] = ()
    ) -> datetime | None:
        """Alias of `deadline`."""
        return self.deadline(start, allowed_working_seconds, pauses)

    # -- internals ----------------------------------------------------------

    def _local(self, name: str, value: datetime) -> tuple[int, int]:
        """(ordinal, microseconds since local midnight) of `value` in the calendar's zone."""
        require_aware(name, value)
        local = value.astimezone(self._tz)
        since = ((local.hour * 60 + local.minute) * 60 + local.second) * US + local.microsecond
        return local.toordinal(), since

    def _at(self, ordinal: int, micros: int) -> datetime:
        """The instant ``micros`` after local midnight of day ``ordinal`` (less than a day):
        the same wall-clock time as combining the date with that time of day."""
        midnight = self._midnights.get(ordinal)
        if midnight is None:
            midnight = datetime.combine(date.fromordinal(ordinal), time(), tzinfo=self._tz)
            self._midnights[ordinal] = midnight
        return midnight + timedelta(microseconds=micros)

    def _office_within(self, lo: int, hi: int) -> int:
        return sum(max(0, min(b, hi) - max(a, lo)) for a, b in self._office)

    def _year(self, year: int) -> _Year:
        table = self._years.get(year)
        if table is None:
            table = self._build_year(year)
            self._years[year] = table
        return table

    def _build_year(self, year: int) -> _Year:
        off: set[date] = set()
        worked: set[date] = set()
        if self._country is not None:
            # Neighbouring years too: a swap can cross New Year (the package lists the
            # worked Saturday 27/12/2014 under 2015), and the package's set of worked
            # weekend days is shared between its instances, hence the year filter.
            found = holidays.country_holidays(self._country, years=range(year - 1, year + 2))
            off = {d for d in found if d.year == year}
            worked = {d for d in getattr(found, "weekend_workdays", ()) if d.year == year}
        first = date(year, 1, 1).toordinal()
        flags = bytearray()
        before = [0]
        for ordinal in range(first, date(year + 1, 1, 1).toordinal()):
            day = date.fromordinal(ordinal)
            if day in self._swaps.worked:
                flag = True
            elif day in self._swaps.off:
                flag = False
            elif day.weekday() in self._weekend:
                flag = day in worked
            else:
                flag = day not in off
            flags.append(flag)
            before.append(before[-1] + flag)
        return _Year(first=first, working=bytes(flags), before=tuple(before))

    def _working(self, ordinal: int) -> bool:
        flag = self._flags.get(ordinal)
        if flag is None:
            table = self._year(date.fromordinal(ordinal).year)
            flag = self._flags[ordinal] = bool(table.working[ordinal - table.first])
        return flag

    def _count(self, lo: int, hi: int) -> int:
        """Working days with ordinals in [lo, hi): one lookup per year spanned."""
        total = 0
        while lo < hi:
            table = self._year(date.fromordinal(lo).year)
            stop = min(hi, table.first + table.days)
            total += table.before[stop - table.first] - table.before[lo - table.first]
            lo = stop
        return total

    def _nth_after(self, ordinal: int, n: int) -> int:
        """Ordinal of the n-th working day after `ordinal` (n >= 1)."""
        ordinal += 1
        while True:
            table = self._year(date.fromordinal(ordinal).year)
            offset = ordinal - table.first
            available = table.before[-1] - table.before[offset]
            if n <= available:
                # before[] is non-decreasing; the first index reaching the target is
                # one past the day we want.
                return table.first + bisect_left(table.before, table.before[offset] + n) - 1
            n -= available
            ordinal = table.first + table.days


# -- small helpers -------------------------------------------------------------


@functools.cache
def _default_calendar() -> WorkingCalendar:
    return WorkingCalendar.for_vietnam()
