"""The demo history's dossiers: whole lifecycles over the last months, through every channel the
platform accepts, with appointment dates from the platform's working-day calendar and results
early, on time and late (``ingest.demo_history`` posts them through the ingest batch path)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, get_args

from ingest import sim_profiles as profiles
from ioc.deadlines import OfficeTime
from ioc.events.kinds import Channel

Event = dict[str, Any]

SOURCE: Final = "demo-history"
DOSSIERS_PER_DAY: Final = 18  # per working day, on average
# Shares of the channels; a channel the platform gains later gets a small share of its own.
CHANNEL_WEIGHTS: Final = {"online": 58, "counter": 24, "postal": 3, "bcci": 9, "kiosk": 6}
# (share, how): early, on the appointment day, late.
_FATES: Final = (("early", 0.5), ("on_time", 0.33), ("late", 0.17))
_FIRST_NUMBER: Final = 5001  # the live simulator numbers each agency's day from 1


def channels() -> tuple[list[str], list[float]]:
    """The channels this platform accepts, and their weights."""
    names = list(get_args(Channel))
    return names, [float(CHANNEL_WEIGHTS.get(name, 4)) for name in names]


def _midnight(at: datetime, office: OfficeTime) -> datetime:
    return at.astimezone(office.tz).replace(hour=0, minute=0, second=0, microsecond=0)


def _fate(rng: random.Random) -> str:
    draw = rng.random()
    for name, share in _FATES:
        if draw < share:
            return name
        draw -= share
    return _FATES[-1][0]


def lifecycle(
    office: OfficeTime, registered: datetime, number: int, rng: random.Random
) -> list[Event]:
    """One dossier's events from registration, as far as they go (no cut at ``now`` here)."""
    procedure = rng.choice(profiles.PROCEDURES)
    agency = rng.choice(procedure.agencies)
    names, weights = channels()
    channel = rng.choices(names, weights=weights)[0]
    has_fee = rng.random() < procedure.fee_share
    day = registered.astimezone(office.tz).strftime("%y%m%d")
    base: Event = {
        "kind": "dossier_event",
        "source": SOURCE,
        "dossier_id": f"H46.{profiles.AGENCY_UNITS[agency]}-{day}-{number:04d}",
        "procedure_code": procedure.code,
        "agency": agency,
        "channel": channel,
        "online_level": rng.choice(("partial", "full_process")) if channel == "online" else None,
        "paid_online": has_fee and channel == "online" and rng.random() < 0.8,
        "digitised": rng.random() < 0.9,
    }
    events: list[Event] = []

    def step(at: datetime, name: str, appointment: datetime | None = None) -> None:
        event = dict(base, event=name, at=at.isoformat())
        event["external_id"] = f"{base['dossier_id']}-{len(events) + 1}"
        if appointment is not None:
            event["appointment_at"] = appointment.isoformat()
        events.append(event)

    step(registered, "registered")
    accepted = office.add(registered, rng.uniform(0.2, 4) * 3600)
    if rng.random() < 0.03:
        step(accepted, "refused")
        return events
    appointment = office.add_working_days(accepted, procedure.legal_days)
    step(accepted, "accepted", appointment)
    processing = office.add(accepted, rng.uniform(0.5, 4) * 3600)
    step(processing, "in_processing", appointment)
    fate = _fate(rng)
    if fate == "late":
        returned = office.add(appointment, rng.uniform(2, 40) * 3600)
    elif fate == "on_time":
        day_start = _midnight(appointment, office)
        returned = office.add(
            day_start, rng.uniform(0.1, 0.95) * office.between(day_start, appointment)
        )
    else:
        returned = office.add(
            processing, rng.uniform(0.2, 0.8) * office.between(processing, appointment)
        )
    returned = max(returned, office.add(processing, 3600))
    span = office.between(processing, returned)
    if has_fee:
        step(office.add(processing, span * 0.5), "fee_requested", appointment)
        step(office.add(processing, span * 0.6), "fee_paid", appointment)
    step(office.add(processing, span * 0.9), "processed", appointment)
    step(returned, "result_returned", appointment)
    return events


def dossier_lifecycles(
    office: OfficeTime, registrations: Sequence[datetime], now: datetime, rng: random.Random
) -> tuple[list[Event], list[tuple[Event, datetime]]]:
    """The dossiers registered at the given moments: their events up to ``now``, and (last
    event, result time) of those whose result was returned by then."""
    events: list[Event] = []
    finished: list[tuple[Event, datetime]] = []
    numbers: dict[str, int] = {}
    for registered in registrations:
        day = registered.astimezone(office.tz).strftime("%y%m%d")
        numbers[day] = numbers.get(day, _FIRST_NUMBER - 1) + 1
        lived = [e for e in lifecycle(office, registered, numbers[day], rng) if _at(e) <= now]
        events.extend(lived)
        if lived and lived[-1]["event"] == "result_returned":
            finished.append((lived[-1], _at(lived[-1])))
    return events, finished


def _at(event: Event) -> datetime:
    return datetime.fromisoformat(str(event["at"]))
