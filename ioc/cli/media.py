"""``ioc media``: the media store's upkeep (uploads no report took, files no row names)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from ioc.cli.common import cli_settings, with_database


@click.group()
def media() -> None:
    """Photos uploaded with field reports."""


@media.command("prune")
@click.option(
    "--older-than-hours",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="Uploads no report has taken after this long are deleted, with files no row names.",
)
def media_prune(older_than_hours: float) -> None:
    """Delete orphaned uploads (POST /v1/media never used by a report) and unused files."""
    from ioc.media.records import prune
    from ioc.media.store import FolderStore

    settings = cli_settings()
    store = FolderStore(settings.media_dir or settings.data_dir / "media")
    age = timedelta(hours=older_than_hours)
    pruned = with_database(
        settings,
        lambda conn: prune(conn, store, datetime.now(UTC) - age, age.total_seconds()),
    )
    click.echo(f"deleted {pruned.rows} orphaned uploads and {pruned.files} unused files")
