"""``ioc sensors``: register traffic sensors from a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from ioc.cli.common import cli_settings, with_database


@click.group()
def sensors() -> None:
    """Traffic sensors (registered data: readings carry only the sensor id)."""


@sensors.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id-column", default="sensor_id", show_default=True)
@click.option("--lon-column", default="lon", show_default=True)
@click.option("--lat-column", default="lat", show_default=True)
@click.option("--name-column", default="name", show_default=True)
def sensors_import(
    file: Path, id_column: str, lon_column: str, lat_column: str, name_column: str
) -> None:
    """Register sensors from a CSV file."""
    import msgspec

    from ioc.store.reference import Sensor, upsert_sensors

    good: list[Sensor] = []
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {id_column, lon_column, lat_column} - set(reader.fieldnames or ())
        if missing:
            raise click.ClickException(
                f"{file}: no column {', '.join(sorted(missing))}; columns are: "
                + ", ".join(reader.fieldnames or ())
            )
        for number, row in enumerate(reader, start=2):
            try:
                good.append(
                    msgspec.convert(
                        {
                            "sensor_id": row[id_column],
                            "lon": float(row[lon_column]),
                            "lat": float(row[lat_column]),
                            "name": row.get(name_column) or "",
                        },
                        Sensor,
                    )
                )
            except (ValueError, msgspec.ValidationError) as exc:
                click.echo(f"{file}:{number}: skipped: {exc}", err=True)
    stored = with_database(cli_settings(), lambda conn: upsert_sensors(conn, good))
    click.echo(f"registered {stored} sensors")
