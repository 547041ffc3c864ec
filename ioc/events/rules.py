"""The rules an event must meet beyond its schema: time bounds, known categories, the sender's
source, and values the database can store.

Every value that passes is one PostgreSQL can store: no NUL character in text (its text and
jsonb cannot hold it), UTC offsets within its ±15:59, and real numbers a ``real`` column holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

import msgspec

from ioc.clock import Clock
from ioc.events.kinds import (
    IDENT_FIELDS,
    IDENT_PATTERN,
    DossierEvent,
    Event,
    Feedback,
    FieldReport,
    TrafficCount,
)

# PostgreSQL stores UTC offsets up to 15:59:59 either way.
_MAX_OFFSET = timedelta(hours=16)
# The smallest normal magnitude of a ``real`` (float4); PostgreSQL refuses what rounds to zero.
_REAL_TINY = 1.1754943508222875e-38
# The largest finite ``real``; the schema bounds of readings keep them far below it.
_REAL_HUGE = 3.4028234663852886e38
NUL_REASON = "text cannot contain the NUL character (\\u0000)"
# The decoder's wording, as when it checked identifiers itself; unlike its ``$``, a newline at
# the end is not let through.
IDENT_REASON = f"Expected `str` matching regex {IDENT_PATTERN!r}"
_IDENT = re.compile(IDENT_PATTERN.removesuffix("$") + r"\Z")


def nul_field(value: object, prefix: str = "") -> str | None:
    """The first field (dotted path) whose text, or a key, holds a NUL character; else None."""
    if isinstance(value, str):
        return prefix or "(value)" if "\x00" in value else None
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            found = nul_field(getattr(value, name), f"{prefix}.{name}" if prefix else name)
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(key, str) and "\x00" in key:
                return path
            found = nul_field(item, path)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = nul_field(item, f"{prefix}[{index}]")
            if found is not None:
                return found
    return None


class Problem(Exception):
    """A checked event failed a rule that the schema alone cannot express."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class EventRules:
    """Checks an event against time bounds, known categories and the sender's source."""

    zone: tzinfo
    clock: Clock
    categories: Callable[[], frozenset[str]]
    earliest_year: int = 2000
    max_future_s: int = 600

    def check(self, event: Event, source: str | None) -> Event:
        """The event with zones applied and its source filled in; raises Problem."""
        latest = self.clock.now() + timedelta(seconds=self.max_future_s)
        return self._check(event, source, latest, set())

    def checker(self, source: str | None) -> Callable[[Event], Event]:
        """``check`` for the events of one request: the clock is read once, not per event."""
        latest = self.clock.now() + timedelta(seconds=self.max_future_s)
        earliest = self.earliest_year
        # Fixed UTC offsets already seen within PostgreSQL's range (readings repeat a few),
        # each with the latest time allowed, told in that offset: two times of one tzinfo
        # compare by their fields, where times of two offsets compare through their UTC
        # offsets, twenty times slower (the decoder gives one tzinfo to each offset).
        fine: dict[tzinfo, datetime] = {}
        # Identifiers already found well formed (a batch's readings name the same sensors).
        idents: set[str] = set()

        def check(event: Event) -> Event:
            # Readings come by the thousand: their rules inline, with the same outcome as
            # _idents, _real and _moment (which they fall back to for anything unusual).
            if type(event) is TrafficCount:
                if event.sensor_id not in idents:
                    _idents(event, idents)
                speed, occupancy, observed = event.avg_speed_kmh, event.occupancy, event.observed_at
                if speed is not None and not (speed == 0.0 or _REAL_TINY <= speed <= _REAL_HUGE):
                    _real("avg_speed_kmh", speed)
                if occupancy is not None and not (
                    occupancy == 0.0 or _REAL_TINY <= occupancy <= _REAL_HUGE
                ):
                    _real("occupancy", occupancy)
                zoned = observed.tzinfo
                bound = fine.get(zoned) if type(zoned) is timezone else None
                if bound is None or observed > bound or observed.year < earliest:
                    moment = self._moment("observed_at", observed, latest)
                    if type(zoned) is timezone:  # _moment passed: its offset is in range
                        fine[zoned] = latest.astimezone(zoned)
                    if moment is not observed:
                        event = msgspec.structs.replace(event, observed_at=moment)
                return event
            return self._check(event, source, latest, idents)

        return check

    def _check(self, event: Event, source: str | None, latest: datetime, idents: set[str]) -> Event:
        _idents(event, idents)
        if isinstance(event, TrafficCount):
            _real("avg_speed_kmh", event.avg_speed_kmh)
            _real("occupancy", event.occupancy)
            observed = self._moment("observed_at", event.observed_at, latest)
            if observed is not event.observed_at:
                event = msgspec.structs.replace(event, observed_at=observed)
            return event
        if isinstance(event, FieldReport):
            occurred = self._moment("occurred_at", event.occurred_at, latest)
            known = self.categories()
            if event.category not in known:
                raise Problem(
                    "category",
                    f"unknown category {event.category!r}; accepted: {', '.join(sorted(known))}",
                )
            return msgspec.structs.replace(
                event, occurred_at=occurred, source=self._source(event.source, source)
            )
        if isinstance(event, Feedback):
            return self._feedback(event, source, latest)
        return self._dossier(event, source, latest)

    def _feedback(self, event: Feedback, source: str | None, latest: datetime) -> Feedback:
        rated = self._moment("rated_at", event.rated_at, latest)
        chosen = self._source(event.source, source)
        # Without its own id a rating is known by its report and time: a replay repeats it.
        external = event.external_id or f"{event.report_id}:{rated.isoformat()}"
        return msgspec.structs.replace(event, rated_at=rated, source=chosen, external_id=external)

    def _dossier(self, event: DossierEvent, source: str | None, latest: datetime) -> DossierEvent:
        at = self._moment("at", event.at, latest)
        appointment = event.appointment_at
        if appointment is not None and appointment.tzinfo is None:
            appointment = appointment.replace(tzinfo=self.zone)
        if appointment is not None:
            _offset("appointment_at", appointment)
        if event.channel == "online" and event.online_level is None:
            raise Problem(
                "online_level",
                "an online dossier needs online_level; accepted: partial, full_process",
            )
        if event.channel != "online" and event.online_level is not None:
            raise Problem(
                "online_level", f"online_level applies to online dossiers, not {event.channel!r}"
            )
        if event.event == "rated" and event.rating is None:
            raise Problem(
                "rating",
                "a rated event needs a rating; accepted: satisfied, normal, not_satisfied, 1-5",
            )
        if event.event != "rated" and (event.rating is not None or event.comment is not None):
            raise Problem(
                "rating" if event.rating is not None else "comment",
                f"a rating and its comment belong to a rated event, not {event.event!r}",
            )
        if (event.lon is None) != (event.lat is None):
            raise Problem(
                "lon" if event.lon is None else "lat", "give both lon and lat, or neither"
            )
        chosen = self._source(event.source, source)
        external = event.external_id or f"{event.dossier_id}:{event.event}:{at.isoformat()}"
        return msgspec.structs.replace(
            event, at=at, appointment_at=appointment, source=chosen, external_id=external
        )

    def _moment(self, name: str, value: datetime, latest: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.zone)
        _offset(name, value)
        if value > latest:
            raise Problem(
                name, f"{value.isoformat()} is in the future (now {self.clock.now().isoformat()})"
            )
        if value.year < self.earliest_year:
            raise Problem(name, f"{value.isoformat()} is before {self.earliest_year}-01-01")
        return value

    @staticmethod
    def _source(given: str | None, keyed: str | None) -> str:
        if keyed is None:
            if given is None:
                raise Problem("source", "source is required with a key that is not tied to one")
            return given
        if given is not None and given != keyed:
            raise Problem("source", f"source {given!r} does not match this key's source {keyed!r}")
        return keyed


def _idents(event: Event, known: set[str]) -> None:
    """Refuse an identifier outside the alphabet; ``known`` holds those already found good."""
    for name in IDENT_FIELDS[type(event)]:
        value = getattr(event, name)
        if value is None or value in known:
            continue
        if _IDENT.match(value) is None:
            raise Problem(name, IDENT_REASON)
        known.add(value)


def _offset(name: str, value: datetime) -> None:
    offset = value.utcoffset()
    if offset is not None and abs(offset) >= _MAX_OFFSET:
        raise Problem(
            name,
            f"the UTC offset of {value.isoformat()} is out of range; offsets run from "
            "-15:59 to +15:59",
        )


def _real(name: str, value: float | None) -> None:
    if value is not None and (
        not math.isfinite(value) or (value != 0.0 and abs(value) < _REAL_TINY)
    ):
        raise Problem(
            name, f"{value!r} cannot be stored as a real number; send 0 or a larger value"
        )
