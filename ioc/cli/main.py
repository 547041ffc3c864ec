"""The ``ioc`` command line."""

from __future__ import annotations

import os
import sys

import click

from ioc.cli.alerts import alerts
from ioc.cli.bench import bench
from ioc.cli.common import cli_settings
from ioc.cli.config import config
from ioc.cli.db import db
from ioc.cli.imports import import_group
from ioc.cli.ingest import ingest
from ioc.cli.jurisdictions import jurisdictions
from ioc.cli.keys import keys
from ioc.cli.media import media
from ioc.cli.replay import replay
from ioc.cli.sensors import sensors
from ioc.cli.users import users
from ioc.settings import describe_settings
from ioc.store import migrate
from ioc.store.database import DatabaseLocation


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ioc-platform")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log lines: -v for INFO (the embedded database's too), -vv for DEBUG. "
    "Without it, commands log warnings only (serve and demo: INFO), unless IOC_LOG_LEVEL is set.",
)
def main(verbose: int) -> None:
    """IOC event platform: field reports, traffic counters and dossier events."""


@main.command()
@click.option("--host", help="Address to listen on (default: IOC_HOST).")
@click.option("--port", type=int, help="Port to listen on (default: IOC_PORT).")
@click.option("--workers", type=int, help="Server processes (default: IOC_WORKERS).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the API, websockets and background workers."""
    import uvicorn

    from ioc.api.app import create_app
    from ioc.api.body import server_limits

    settings = cli_settings(quiet="INFO")
    host, port = host or settings.host, port or settings.port
    workers = workers or settings.workers
    if workers == 1:
        uvicorn.run(
            create_app(settings), host=host, port=port, log_config=None, **server_limits(settings)
        )
        return
    from ioc.metrics import shared_between_workers

    # Several processes share one database: resolve and migrate it once, here. They also share
    # their metrics (prometheus_client's multiprocess mode): any worker answers for all.
    with DatabaseLocation(settings) as location, shared_between_workers():
        migrate.upgrade(location.url, settings.timescale)
        os.environ["IOC_DATABASE_URL"] = location.url
        location.supervise()  # the embedded server is started again here if it dies
        uvicorn.run(
            "ioc.api.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            **server_limits(settings),
        )


@main.command()
@click.option("--port", type=int, help="Port to serve on (default: IOC_PORT).")
@click.option("--seed", default=7, show_default=True, help="Simulator random seed.")
def demo(port: int | None, seed: int) -> None:
    """Run the platform with a simulator streaming a plausible province."""
    from ingest.demo import run_demo

    settings = cli_settings(quiet="INFO")
    run_demo(settings, port or settings.port, seed)


@main.command("settings")
def show_settings() -> None:
    """Show every setting: its variable, current value and meaning (secrets masked)."""
    current = cli_settings().shown()
    for variable, _default, meaning in describe_settings():
        name = variable.removeprefix("IOC_").lower()
        click.echo(f"{variable}={current.get(name)}  # {meaning}")


for command in (
    db,
    keys,
    sensors,
    config,
    replay,
    bench,
    import_group,
    ingest,
    jurisdictions,
    alerts,
):
    main.add_command(command)
main.add_command(users)
main.add_command(media)

if __name__ == "__main__":
    sys.exit(main())
