"""What every SLA time policy offers (``Clockwork``), plain elapsed time (``CalendarHours``), and the pause
arithmetic both policies share."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


Pause = tuple[datetime, datetime | None]


US = 1_000_000  # all office-time arithmetic is in integer microseconds, so round trips are exact


class Clockwork(Protocol):
    """What an SLA clock needs from a time policy, so callers need not know which one it is."""

    def add(self, start: datetime, seconds: float) -> datetime:
        """The earliest instant at which `seconds` of counted time have run since `start`."""
        ...

    def between(self, a: datetime, b: datetime) -> float:
        """Counted seconds from `a` to `b`; 0 if `b` is not after `a`."""
        ...

    def used(self, start: datetime, end: datetime, pauses: Iterable[Pause] = ()) -> float:
        """Counted seconds from `start` to `end`, leaving out the paused spans."""
        ...

    def deadline(
        self, start: datetime, allowed_seconds: float, pauses: Iterable[Pause] = ()
    ) -> datetime | None:
        """When `allowed_seconds` run out, pushed back by pauses; None while paused open-endedly."""
        ...


class CalendarHours:
    """Plain elapsed time, round the clock, for SLAs stated in calendar hours."""

    __slots__ = ("_tz",)

    def __init__(self, tz: tzinfo | str = DEFAULT_TIMEZONE) -> None:
        self._tz = zone_of(tz)

    @property
    def tz(self) -> tzinfo:
        return self._tz

    def __repr__(self) -> str:
        return f"CalendarHours(tz={str(self._tz)!r})"

    def add(self, start: datetime, seconds: float) -> datetime:
        """`start` plus `seconds` of elapsed time, in the calendar's zone."""
        require_aware("start", start)
        micros = to_micros(seconds, "seconds")
        # Through UTC: adding a timedelta to an aware datetime moves the wall clock,
        # which is not elapsed time across a DST change in zones that have one.
        moved = start.astimezone(UTC) + timedelta(microseconds=micros)
        return moved.astimezone(self._tz)

    def between(self, a: datetime, b: datetime) -> float:
        """Elapsed seconds from `a` to `b`; 0 if `b` is not after `a`."""
        require_aware("a", a)
        require_aware("b", b)
        return max(0.0, (b.astimezone(UTC) - a.astimezone(UTC)).total_seconds())

    def used(self, start: datetime, end: datetime, pauses: Iterable[Pause] = ()) -> float:
        """Elapsed seconds from `start` to `end`, leaving out the paused spans."""
        return time_used(self, start, end, pauses)

    def deadline(
        self, start: datetime, allowed_seconds: float, pauses: Iterable[Pause] = ()
    ) -> datetime | None:
        """When `allowed_seconds` of elapsed time run out, pushed back by the pauses."""
        return deadline_after(self, start, allowed_seconds, pauses)

    def add_hours(self, start: datetime, hours: float) -> datetime:
        """`add` in hours."""
        return self.add(start, hours * 3600)

    def seconds_between(self, a: datetime, b: datetime) -> float:
        """Alias of `between`."""
        return self.between(a, b)

    def seconds_used(self, start: datetime, end: datetime, pauses: Iterable[Pause] = ()) -> float:
        """Alias of `used`."""
        return self.used(start, end, pauses)

    def deadline_with_pauses(
        self, start: datetime, allowed_seconds: float, pauses: Iterable[Pause] = ()
    ) -> datetime | None:
        """Alias of `deadline`."""
        return self.deadline(start, allowed_seconds, pauses)


def time_used(clock: Clockwork, start: datetime, end: datetime, pauses: Iterable[Pause]) -> float:
    require_aware("start", start)
    require_aware("end", end)
    if end <= start:
        return 0.0
    total = clock.between(start, end)
    for paused_from, paused_to in merged(pauses, start):
        if paused_from >= end:
            break
        stop = end if paused_to is None or paused_to > end else paused_to
        total -= clock.between(paused_from, stop)
    return max(total, 0.0)


def deadline_after(
    clock: Clockwork, start: datetime, allowed_seconds: float, pauses: Iterable[Pause]
) -> datetime | None:
    require_aware("start", start)
    remaining = float(to_micros(allowed_seconds, "allowed_seconds")) / US
    cursor = start
    for paused_from, paused_to in merged(pauses, start):
        if paused_from > cursor:
            running = clock.between(cursor, paused_from)
            if running >= remaining:
                return clock.add(cursor, remaining)
            remaining -= running
        if paused_to is None:
            return None
        cursor = max(cursor, paused_to)
    return clock.add(cursor, remaining)


def merged(pauses: Iterable[Pause], start: datetime) -> list[Pause]:
    """Pauses clipped to begin no earlier than `start`, sorted, overlaps joined."""
    spans: list[Pause] = []
    for number, pause in enumerate(pauses, start=1):
        try:
            paused_from, paused_to = pause
        except (TypeError, ValueError):
            raise ValueError(
                f"pause {number} is {pause!r}, must be a (start, end or None) pair"
            ) from None
        require_aware(f"pause {number} start", paused_from)
        if paused_to is not None:
            require_aware(f"pause {number} end", paused_to)
            if paused_to < paused_from:
                raise ValueError(
                    f"pause {number} ends at {paused_to.isoformat()}, "
                    f"before it starts at {paused_from.isoformat()}"
                )
            if paused_to <= start:
                continue
        spans.append((max(paused_from, start), paused_to))
    spans.sort(key=lambda span: span[0])
    joined: list[Pause] = []
    for paused_from, paused_to in spans:
        if joined:
            last_from, last_to = joined[-1]
            if last_to is None:
                break  # an open pause swallows everything after it
            if paused_from <= last_to:
                if paused_to is None or paused_to > last_to:
                    joined[-1] = (last_from, paused_to)
                continue
        joined.append((paused_from, paused_to))
    return joined


def require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} is a naive datetime ({value.isoformat()}); pass a timezone-aware one, "
            f"e.g. datetime(..., tzinfo=ZoneInfo({DEFAULT_TIMEZONE!r}))"
        )


def zone_of(tz: tzinfo | str) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"tz is {tz!r}, not a known IANA time zone such as {DEFAULT_TIMEZONE!r}"
        ) from exc


def to_micros(seconds: float, name: str) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} is {seconds!r}, must be a finite number of seconds, 0 or more")
    return round(seconds * US)
