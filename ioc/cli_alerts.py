"""``ioc alerts``: run the SLA engine on its own, or one tick of it.

The server runs the engine itself (IOC_SLA_ENGINE); a deployment may instead run it as a
separate worker process with ``ioc alerts run``. Several engines may share one database.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import click

from ioc.errors import IocError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def alerts() -> None:
    """SLA clocks and alerts."""


async def _engine_tick(at: datetime | None, forever: bool) -> None:
    from alerting.engine import SlaEngine
    from alerting.setup import load_book
    from ioc.cli import _settings
    from ioc.clock import SystemClock
    from ioc.store.database import DatabaseLocation, make_pool, with_timezone

    settings = _settings()
    with DatabaseLocation(settings) as location:
        pool = make_pool(with_timezone(location.url, settings.timezone), settings)
        await pool.open(wait=True, timeout=30)
        try:
            async with pool.connection() as conn:
                book = await load_book(conn, settings)
            engine = SlaEngine(pool, SystemClock(settings.zone), settings, lambda: book)
            if forever:
                click.echo("SLA engine running; Ctrl-C stops it", err=True)
                await engine.run()
            result = await engine.tick(at)
            click.echo(
                f"checked {result.tickets} tickets and {result.dossiers} dossiers: "
                f"{result.raised} alerts raised, {result.apologies} apology letters, "
                f"{result.queued} deliveries queued"
            )
        finally:
            await pool.close()


@alerts.command("tick")
@click.option(
    "--at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    help="Check as of this instant (with offset), not now: for drills and audits.",
)
def tick(at: datetime | None) -> None:
    """Check every due clock once and deliver due alerts."""
    try:
        asyncio.run(_engine_tick(at, forever=False))
    except IocError as exc:
        raise click.ClickException(exc.message) from None


@alerts.command("run")
def run() -> None:
    """Run the SLA engine until stopped (instead of inside the server)."""
    try:
        asyncio.run(_engine_tick(None, forever=True))
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    except KeyboardInterrupt:
        pass
