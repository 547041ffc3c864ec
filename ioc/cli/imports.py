"""``ioc import``: history from other systems, with its own timestamps."""

from __future__ import annotations

from pathlib import Path

import click

from ioc.cli.common import cli_settings, with_database
from ioc.errors import IocError


@click.group("import")
def import_group() -> None:
    """History from other systems, with its own timestamps."""


@import_group.command("requests")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default="baltimore-311", show_default=True, help="Source name.")
@click.option(
    "--zone", default="America/New_York", show_default=True, help="Zone of the file's times."
)
def import_requests(file: Path, source: str, zone: str) -> None:
    """Import an Open Baltimore 311 CSV export as tickets (created, due and closed times kept).

    Office time is counted on a US calendar (Monday–Friday 08:30–16:30, federal holidays
    off) in ZONE. Running it again imports only requests not imported before.
    """
    from ingest.requests311 import import_history, read_baltimore_csv, us_calendar

    try:
        calendar = us_calendar(zone)
    except ValueError as exc:
        raise click.ClickException(f"--zone: {exc}") from None
    try:
        read = read_baltimore_csv(file, zone)
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    for problem in read.problems[:20]:
        click.echo(f"{file}: {problem}: left out", err=True)
    if len(read.problems) > 20:
        click.echo(f"{file}: … and {len(read.problems) - 20} more rows left out", err=True)
    result = with_database(
        cli_settings(), lambda conn: import_history(conn, read.requests, calendar, source)
    )
    click.echo(str(result))
