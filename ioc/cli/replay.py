"""``ioc replay``: stream a file of events to a running server."""

from __future__ import annotations

from pathlib import Path

import click

from ioc.cli.common import cli_settings, parse_pairs
from ioc.errors import IocError


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", help="Server URL (default: http://IOC_HOST:IOC_PORT).")
@click.option("--key", envvar="IOC_API_KEY", required=True, help="API key (or IOC_API_KEY).")
@click.option("--rate", type=float, help="Events per second (default: as fast as possible).")
@click.option(
    "--speed",
    type=float,
    help="Follow the events' own timestamps, this many times faster than real time.",
)
@click.option("--batch-size", default=1000, show_default=True)
@click.option(
    "--kind",
    type=click.Choice(["field_report", "traffic_count", "dossier_event"]),
    help="For CSV files: the kind of every row (when there is no 'kind' column).",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="For CSV files: send COLUMN as the event field FIELD (repeatable). Columns neither "
    "renamed nor named after a field are left out.",
)
@click.option(
    "--set",
    "constants",
    multiple=True,
    metavar="FIELD=VALUE",
    help="For CSV files: give every event this field (repeatable), e.g. interval_s=300.",
)
@click.option(
    "--timezone",
    help="Zone of timestamps without an offset, e.g. Europe/Copenhagen "
    "(default: the server reads them in its IOC_TIMEZONE).",
)
@click.option(
    "--retries",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retries of a batch the server could not take (5xx, busy, unreachable), with backoff.",
)
def replay(
    file: Path,
    url: str | None,
    key: str,
    rate: float | None,
    speed: float | None,
    batch_size: int,
    kind: str | None,
    columns: tuple[str, ...],
    constants: tuple[str, ...],
    timezone: str | None,
    retries: int,
) -> None:
    """Stream an NDJSON or CSV file to a running server, with a progress bar.

    Exits non-zero when a batch could not be stored after its retries.
    """
    from ingest.replay import replay_file
    from ingest.replay_files import ReplayOptions

    settings = cli_settings()
    if url is None:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        url = f"http://{host}:{settings.port}"
    renames: dict[str, str] = {}
    for column, field in parse_pairs(columns, "--column", "COLUMN=FIELD").items():
        if field in renames:
            raise click.BadParameter(
                f"{renames[field]!r} and {column!r} are both sent as {field!r}",
                param_hint="--column",
            )
        renames[field] = column
    try:
        summary = replay_file(
            file,
            ReplayOptions(
                url=url,
                key=key,
                rate=rate,
                speed=speed,
                batch_size=batch_size,
                kind=kind,
                columns=renames,
                constants=parse_pairs(constants, "--set"),
                zone=settings.timezone,
                timezone=timezone,
                retries=retries,
            ),
        )
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(summary)
    if not summary.complete:
        click.echo("replay incomplete: the server could not store every batch", err=True)
        raise click.exceptions.Exit(1)
