"""Building the alerting pieces from the platform's settings."""

from __future__ import annotations

from typing import Any

import psycopg

from alerting.calendar import WorkingCalendar
from ioc.deadlines import DeadlineBook, load_policies
from ioc.errors import ConfigError
from ioc.settings import Settings
from ioc.store.routing_data import load_deadlines


def office_hours(text: str) -> list[tuple[str, str]]:
    """'07:30-11:30,13:30-17:00' → [('07:30', '11:30'), ('13:30', '17:00')]."""
    spans = []
    for part in text.split(","):
        start, sep, end = part.strip().partition("-")
        if not sep or not start.strip() or not end.strip():
            raise ConfigError(
                f"IOC_OFFICE_HOURS={text!r}: each span is HH:MM-HH:MM, e.g. 07:30-11:30,13:30-17:00"
            )
        spans.append((start.strip(), end.strip()))
    return spans


def working_calendar(settings: Settings) -> WorkingCalendar:
    """The Vietnamese working calendar with the configured office hours and swap days."""
    try:
        return WorkingCalendar.for_vietnam(
            tz=settings.timezone,
            office_hours=office_hours(settings.office_hours),
            swap_files=[settings.swap_days_file] if settings.swap_days_file else [],
        )
    except (ValueError, OSError) as exc:
        raise ConfigError(f"the working calendar cannot be built: {exc}") from exc


async def load_book(conn: psycopg.AsyncConnection[Any], settings: Settings) -> DeadlineBook:
    """The deadline policies in force, counted in the configured working calendar."""
    tickets, dossiers = await load_policies(conn)
    return DeadlineBook(
        working_calendar(settings),
        settings.sla_due_soon_fraction,
        tickets,
        dossiers,
        await load_deadlines(conn),
    )
