"""``ioc ingest``: run a source adapter on its own, outside the API server.

``ioc ingest mqtt`` is the subscriber ``ioc serve`` runs when IOC_MQTT_URL is set, as its own
process: it may be stopped, killed or scaled apart from the API (one process per client id).
"""

from __future__ import annotations

import asyncio

import click

from ioc.cli.common import cli_settings
from ioc.errors import IocError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def ingest() -> None:
    """Source adapters run on their own."""


@ingest.command("mqtt")
@click.option("--url", help="Broker URL (default: IOC_MQTT_URL).")
@click.option(
    "--metrics-port",
    type=int,
    help="Serve this process's Prometheus metrics on 127.0.0.1 at this port.",
)
def ingest_mqtt(url: str | None, metrics_port: int | None) -> None:
    """Take events from an MQTT broker's topics until stopped (Ctrl-C)."""
    from alerting.setup import working_calendar
    from ingest.mqtt_setup import subscriber
    from ioc.api.body import freeze_startup_heap
    from ioc.platform import Platform

    settings = cli_settings(quiet="INFO")
    if url:
        settings = settings.model_copy(update={"mqtt_url": url})
    platform = Platform(settings, working_calendar(settings))

    async def run() -> None:
        await platform.start()
        freeze_startup_heap()  # as ioc serve does: the libraries' objects, out of the GC's walk
        try:
            if metrics_port is not None:
                from prometheus_client import start_http_server

                start_http_server(metrics_port, "127.0.0.1", platform.metrics.registry)
            await subscriber(platform).run()
        finally:
            await platform.stop()

    try:
        asyncio.run(run())
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    except KeyboardInterrupt:
        pass
