"""``ioc jurisdictions``: import and list versioned boundary sets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from ioc.cli.common import cli_settings, with_database
from ioc.errors import InvalidInput
from ioc.routing.jurisdictions import LEVELS, read_boundary_file


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def jurisdictions() -> None:
    """Jurisdiction boundaries (versioned sets that reports are routed by)."""


@jurisdictions.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--level", type=click.Choice(LEVELS), required=True, help="Level of every jurisdiction."
)
@click.option("--code-field", default="code", show_default=True, help="Field with the code.")
@click.option("--name-field", default="name", show_default=True, help="Field with the name.")
@click.option(
    "--parent-field", help="Field with the parent jurisdiction's code, e.g. province_code."
)
@click.option(
    "--effective-from",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    required=True,
    help="Date the boundaries take effect, YYYY-MM-DD (e.g. 2025-07-01).",
)
@click.option("--layer", help="Layer to read, for files with several (e.g. GeoPackage).")
def jurisdictions_import(
    file: Path,
    level: str,
    code_field: str,
    name_field: str,
    parent_field: str | None,
    effective_from: datetime,
    layer: str | None,
) -> None:
    """Import a boundary set from FILE (GeoJSON, GeoPackage, Shapefile, ...).

    Importing the same level and date again replaces that set; other dates are kept.
    """
    from ioc.store.jurisdictions import save_boundary_set

    settings = cli_settings()
    day = effective_from.date()
    try:
        read = read_boundary_file(
            file,
            level,
            day,
            code_field=code_field,
            name_field=name_field,
            parent_field=parent_field,
            layer=layer,
        )
    except InvalidInput as exc:
        raise click.ClickException(exc.message) from None
    if read.reprojected_from:
        click.echo(
            f"note: {read.source_name}: reprojected from {read.reprojected_from} to EPSG:4326",
            err=True,
        )
    for line in read.warnings():
        click.echo(f"warning: {line}", err=True)
    replaced = with_database(
        settings, lambda conn: save_boundary_set(conn, read.boundaries, read.source_name)
    )
    click.echo(
        f"imported {len(read.boundaries)} {level} jurisdictions effective {day.isoformat()} "
        f"from {read.source_name}"
    )
    if replaced is not None:
        click.echo(
            f"replaced the earlier set: {replaced.feature_count} jurisdictions from "
            f"{replaced.source_name}, imported {replaced.imported_at.isoformat(timespec='seconds')}"
        )


@jurisdictions.command("list")
def jurisdictions_list() -> None:
    """List the stored boundary sets."""
    from ioc.store.jurisdictions import list_boundary_sets

    sets = with_database(cli_settings(), list_boundary_sets)
    if not sets:
        click.echo("no boundary sets; add one with: ioc jurisdictions import FILE", err=True)
        return
    click.echo(f"{'level':<10}{'effective_from':<16}{'count':>7}  {'source':<36}imported_at")
    for s in sets:
        click.echo(
            f"{s.level:<10}{s.effective_from.isoformat():<16}{s.feature_count:>7}  "
            f"{s.source_name:<36}{s.imported_at.isoformat(timespec='seconds')}"
        )
