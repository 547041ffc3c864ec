"""What every ``ioc`` command group shares: settings with logging set up, and a database to work on.

The group modules take these from here (never from ``ioc.cli.main``, which imports them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import psycopg

from ioc import logs
from ioc.errors import IocError
from ioc.settings import Settings, load_settings
from ioc.store import migrate
from ioc.store.database import DatabaseLocation, with_timezone

T = TypeVar("T")


def cli_settings(quiet: str = "WARNING") -> Settings:
    """The settings, with logging set up: ``quiet`` unless -v or IOC_LOG_LEVEL asks for more."""
    try:
        settings = load_settings()
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    context = click.get_current_context(silent=True)
    verbose = int(context.find_root().params.get("verbose") or 0) if context else 0
    explicit = settings.log_level if "log_level" in settings.model_fields_set else None
    logs.configure(settings.log_format, *logs.levels(verbose, explicit, quiet))
    return settings


def with_database(
    settings: Settings, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
) -> T:
    """Run ``work`` on a connection to the migrated database (embedded or configured)."""
    with DatabaseLocation(settings) as location:
        migrate.upgrade(location.url, settings.timescale)

        async def run() -> T:
            url = with_timezone(location.url, settings.timezone)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                return await work(conn)

        try:
            return asyncio.run(run())
        except IocError as exc:
            raise click.ClickException(exc.message) from None


def parse_pairs(items: tuple[str, ...], option: str, form: str = "FIELD=VALUE") -> dict[str, str]:
    """``NAME=VALUE`` option values as a mapping; a malformed one is a usage error naming the option."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not of the form {form}", param_hint=option)
        pairs[name.strip()] = value.strip()
    return pairs
