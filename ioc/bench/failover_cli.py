"""The ``ioc bench failover`` command (the run itself is in ioc.bench.failover)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("failover")
@click.option("--servers", default=3, show_default=True, help="API processes on the cluster.")
@click.option("--rate", default=1_000.0, show_default=True, help="Field reports per second.")
@click.option(
    "--before", default=15.0, show_default=True, help="Seconds of ingest before the kill."
)
@click.option("--after", default=45.0, show_default=True, help="Seconds of ingest after the kill.")
@click.option("--clients", default=2, show_default=True, help="Websocket clients per process.")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the cluster in this folder (default: a temporary one, removed after).",
)
@click.option("--fast", is_flag=True, help="Patroni's test timing instead of deploy/ha's.")
def failover(
    servers: int,
    rate: float,
    before: float,
    after: float,
    clients: int,
    home: Path | None,
    fast: bool,
) -> None:
    """kill -9 the primary PostgreSQL of a Patroni cluster under steady ingest: outage, loss."""
    from ioc.bench.failover import cluster_home, measure_failover, report_lines
    from ioc.bench.harness import machine_line
    from ioc.ha.config import FAST, SHIPPED

    if servers < 1 or rate <= 0 or before <= 0 or after <= 0 or clients < 0:
        raise click.BadParameter("--servers, --rate, --before, --after must be positive")
    timing = FAST if fast else SHIPPED
    with cluster_home(home) as folder:
        run = measure_failover(
            folder,
            servers=servers,
            rate=rate,
            before_s=before,
            after_s=after,
            clients_per_server=clients,
            timing=timing,
        )
    for line in report_lines(run, timing):
        click.echo(line)
    click.echo(machine_line("failover", run.figures()))
