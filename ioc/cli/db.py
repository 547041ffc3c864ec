"""``ioc db``: the database schema."""

from __future__ import annotations

import click

from ioc.cli.common import cli_settings
from ioc.store import migrate
from ioc.store.database import DatabaseLocation


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (safe to run twice, or from two processes at once)."""
    settings = cli_settings()
    with DatabaseLocation(settings) as location:
        applied = migrate.upgrade(location.url, settings.timescale)
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
    else:
        click.echo("the database is up to date")
