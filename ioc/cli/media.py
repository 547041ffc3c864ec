"""``ioc media``: the media store's upkeep (uploads no report took, files no row names) and a check
that the configured store answers."""

from __future__ import annotations

import os
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
    from ioc.media.stores import open_media_store

    settings = cli_settings()
    store = open_media_store(settings)
    age = timedelta(hours=older_than_hours)
    pruned = with_database(
        settings,
        lambda conn: prune(conn, store, datetime.now(UTC) - age, age.total_seconds()),
    )
    click.echo(f"deleted {pruned.rows} orphaned uploads and {pruned.files} unused files")


@media.command("check")
def media_check() -> None:
    """Check that the media store answers: the folder exists or the S3 bucket does."""
    from ioc.media.s3 import S3Store
    from ioc.media.store import FolderStore
    from ioc.media.stores import describe, open_media_store

    settings = cli_settings()
    store = open_media_store(settings)
    try:
        if isinstance(store, S3Store):
            store.check()
        elif isinstance(store, FolderStore):
            store.root.mkdir(parents=True, exist_ok=True)
            if not os.access(store.root, os.W_OK):
                raise PermissionError("the folder is not writable")
    except Exception as exc:  # every failure is reported the same way
        raise click.ClickException(f"{describe(settings)}: {exc}") from exc
    click.echo(f"{describe(settings)}: answers")
