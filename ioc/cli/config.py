"""``ioc config``: agencies, categories and responsibility rules from a TOML file."""

from __future__ import annotations

from pathlib import Path

import click

from ioc.cli.common import cli_settings, with_database
from ioc.errors import IocError


@click.group()
def config() -> None:
    """Agencies, categories and responsibility rules."""


@config.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def config_load(file: Path) -> None:
    """Load a TOML file: upsert agencies and categories, replace the rules."""
    from ioc.routing.rules import apply_config, read_config

    try:
        parsed = read_config(file)
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    counts = with_database(cli_settings(), lambda conn: apply_config(conn, parsed))
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()) + f" loaded from {file.name}")


@config.command("show")
def config_show() -> None:
    """Print the current configuration as JSON."""
    import msgspec

    from ioc.routing.rules import dump_config

    current = with_database(cli_settings(), dump_config)
    click.echo(msgspec.json.format(msgspec.json.encode(current)).decode())
