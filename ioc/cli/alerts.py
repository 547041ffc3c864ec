"""``ioc alerts``: run every alert rule set on its own, or one pass of them at a chosen instant.

The server runs the SLA engine, the traffic watch and webhook delivery itself (IOC_SLA_ENGINE);
a deployment may instead run them as a separate worker process with ``ioc alerts run``.
Several workers may share one database.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime

import click

from ioc.cli.common import cli_settings
from ioc.errors import IocError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def alerts() -> None:
    """SLA clocks, traffic alerts and their delivery."""


async def _alerting(at: datetime | None, forever: bool) -> None:
    from alerting.worker import RuleData, one_pass, run_all
    from ioc.clock import SystemClock
    from ioc.store.database import DatabaseLocation, make_pool, with_timezone

    settings = cli_settings()
    clock = SystemClock(settings.zone)
    with DatabaseLocation(settings) as location:
        pool = make_pool(with_timezone(location.url, settings.timezone), settings)
        await pool.open(wait=True, timeout=30)
        try:
            if forever:
                # A service manager stops a worker with SIGTERM: end as cleanly as on Ctrl-C.
                main = asyncio.current_task()
                assert main is not None
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
                click.echo(
                    "SLA engine, traffic watch and webhook delivery running; Ctrl-C or SIGTERM stops them",
                    err=True,
                )
                await run_all(pool, settings, clock)
                return
            rules = RuleData(settings)
            await rules.load(pool, force=True)
            done = await one_pass(pool, settings, rules, at or clock.now())
        finally:
            await pool.close()
    sla, traffic = done.sla, done.traffic
    click.echo(
        f"checked {sla.tickets} tickets and {sla.dossiers} dossiers: "
        f"{sla.raised} alerts raised, {sla.apologies} apology letters, "
        f"{sla.queued} deliveries queued"
        + (
            f"; {sla.backfilled} passed quietly (due before the record arrived)"
            if sla.backfilled
            else ""
        )
    )
    if traffic.skipped:
        click.echo("traffic: skipped, another process is checking the sensors")
    else:
        click.echo(
            f"traffic: checked {traffic.sensors} sensors: {traffic.silent} silent, "
            f"{traffic.congested} congested; {len(traffic.raised)} alerts raised, "
            f"{len(traffic.cleared)} cleared"
        )
    click.echo(f"webhooks: {done.attempted} deliveries attempted")


@alerts.command("tick")
@click.option(
    "--at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    help="Check as of this instant (with offset), not now: for drills, audits and history.",
)
def tick(at: datetime | None) -> None:
    """One pass of every rule set: traffic, deadlines, then delivery of what is due."""
    try:
        asyncio.run(_alerting(at, forever=False))
    except IocError as exc:
        raise click.ClickException(exc.message) from None


@alerts.command("run")
def run() -> None:
    """Run the SLA engine, traffic watch and webhook delivery until stopped."""
    try:
        asyncio.run(_alerting(None, forever=True))
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
