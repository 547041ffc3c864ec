"""Office hours: local wall-clock spans of a working day, read and checked.

A calendar counts office time in microseconds since local midnight; these helpers turn the
settings' ``(start, end)`` pairs (times or ``'HH:MM'`` strings) into sorted, disjoint spans,
with an error that names the pair at fault, and back into times for display.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time
from itertools import pairwise

from alerting.clockwork import US


def micros_of(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * US + t.microsecond


def clock(micros: int) -> time:
    seconds, micro = divmod(micros, US)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return time(hour, minute, second, micro)


def naive_time(value: time | str, name: str) -> time:
    if isinstance(value, str):
        try:
            value = time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} is {value!r}, must be a time such as '07:30'") from None
    if not isinstance(value, time):
        raise TypeError(f"{name} must be a time or 'HH:MM', got {type(value).__name__}")
    if value.tzinfo is not None:
        raise ValueError(
            f"{name} is {value.isoformat()}; office hours are local wall-clock times, "
            "drop the tzinfo"
        )
    return value


def office_intervals(
    hours: Sequence[tuple[time | str, time | str]],
) -> tuple[tuple[int, int], ...]:
    """Office hours as sorted, disjoint (start, end) microsecond pairs; end is exclusive."""
    spans: list[tuple[int, int]] = []
    for index, pair in enumerate(hours):
        try:
            opens, closes = pair
        except (TypeError, ValueError):
            raise ValueError(
                f"office_hours[{index}] is {pair!r}, must be a (start, end) pair"
            ) from None
        a = micros_of(naive_time(opens, f"office_hours[{index}] start"))
        b = micros_of(naive_time(closes, f"office_hours[{index}] end"))
        if a >= b:
            raise ValueError(
                f"office_hours[{index}] runs {clock(a)}-{clock(b)}: start must be before end"
            )
        spans.append((a, b))
    if not spans:
        raise ValueError(
            "office_hours is empty; give at least one (start, end) pair such as ('07:30', '11:30')"
        )
    spans.sort()
    for (a1, b1), (a2, b2) in pairwise(spans):
        if a2 < b1:
            raise ValueError(
                f"office hours {clock(a1)}-{clock(b1)} and {clock(a2)}-{clock(b2)} overlap"
            )
    return tuple(spans)
