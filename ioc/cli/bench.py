"""``ioc bench``: benchmarks that print their figures and a baseline from the same run."""

from __future__ import annotations

from pathlib import Path

import click

from ioc.cli.common import cli_settings


@click.group()
def bench() -> None:
    """Benchmarks that print figures and a baseline from the same run."""


@bench.command("all")
def bench_all() -> None:
    """Every benchmark at small sizes (a few minutes); each prints its ``bench NAME:`` line."""
    from ioc.bench.harness import machine_line
    from ioc.bench.hostile import run_hostile_bench
    from ioc.bench.ingest import run_ingest_bench
    from ioc.bench.live import run_live_benchmark
    from ioc.bench.review import run_review_benchmark
    from ioc.bench.route import run_route_benchmark
    from ioc.bench.sla import run_sla_benchmark
    from ioc.bench.wall import run_wall_benchmark

    settings = cli_settings()
    lines = [
        machine_line("route", run_route_benchmark(settings, 200_000, 20_000, 2_000)),
        machine_line("ingest", run_ingest_bench(settings, 50_000, 5_000, 3_000, 32)),
        machine_line("sla", run_sla_benchmark(settings, 100_000, 20_000, 5_000)),
        machine_line("live", run_live_benchmark(settings, 50, 500, 5.0, 100_000, 100_000)),
        machine_line("review", run_review_benchmark(settings, 100_000, 100_000, None)),
        machine_line("wall", run_wall_benchmark(settings, 50_000, 50_000)),
        machine_line("hostile", run_hostile_bench(settings, 5.0)),
    ]
    click.echo("\n" + "\n".join(lines))


@bench.command("ingest")
@click.option("--events", default=200_000, show_default=True, help="Readings for the batch test.")
@click.option("--batch-size", default=5_000, show_default=True)
@click.option("--single", default=10_000, show_default=True, help="Single-event requests.")
@click.option("--concurrency", default=32, show_default=True, help="Single-event connections.")
def bench_ingest(events: int, batch_size: int, single: int, concurrency: int) -> None:
    """Ingest throughput over HTTP against a per-row INSERT baseline."""
    from ioc.bench.ingest import run_ingest_bench

    run_ingest_bench(cli_settings(), events, batch_size, single, concurrency)


@bench.command("route")
@click.option("--points", default=1_000_000, show_default=True, help="Random points to locate.")
@click.option("--reports", default=50_000, show_default=True, help="Field reports to ingest.")
@click.option("--batch-size", default=2_000, show_default=True)
@click.option(
    "--larger",
    default=0,
    show_default=True,
    help="Run the batches again with this many reports and print the cost per report at both"
    " sizes (the bar: flat from 50,000 to 500,000); 0: one size.",
)
@click.option(
    "--posters",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Connections posting the batches at once (the bar's figure: 2).",
)
def bench_route(points: int, reports: int, batch_size: int, larger: int, posters: int) -> None:
    """Geo-routing against geopandas.sjoin, and field reports to routed tickets end to end."""
    from ioc.bench.route import run_route_benchmark

    if larger and larger <= reports:
        raise click.BadParameter("--larger must be more than --reports")
    run_route_benchmark(cli_settings(), points, reports, batch_size, larger, posters)


@bench.command("sla")
@click.option("--tickets", default=1_000_000, show_default=True, help="Open tickets.")
@click.option(
    "--small", default=100_000, show_default=True, help="First size, to compare memory with."
)
@click.option("--batch", default=5_000, show_default=True, help="Clocks due in the busy tick.")
def bench_sla(tickets: int, small: int, batch: int) -> None:
    """One SLA engine tick over many open tickets, against scanning them all."""
    from ioc.bench.sla import run_sla_benchmark

    if not 0 < small < tickets:
        raise click.BadParameter("--small must be between 0 and --tickets")
    run_sla_benchmark(cli_settings(), tickets, small, batch)


@bench.command("hostile")
@click.option("--seconds", default=20.0, show_default=True, help="Length of each phase.")
def bench_hostile(seconds: float) -> None:
    """/healthz p99 and server RSS while the worst bodies the limits allow are processed."""
    from ioc.bench.hostile import run_hostile_bench

    run_hostile_bench(cli_settings(), seconds)


@bench.command("live")
@click.option("--clients", default=500, show_default=True, help="Websocket clients listening.")
@click.option("--rate", default=1_000, show_default=True, help="Field reports per second.")
@click.option("--duration", default=10.0, show_default=True, help="Seconds of posting per run.")
@click.option("--tickets", default=1_000_000, show_default=True, help="Tickets for the review.")
@click.option(
    "--dossier-events", default=1_000_000, show_default=True, help="Dossier events for the review."
)
def bench_live(clients: int, rate: int, duration: float, tickets: int, dossier_events: int) -> None:
    """Ingest → websocket latency at a steady rate, and the review queries over many tickets."""
    from ioc.bench.live import run_live_benchmark

    if clients < 1 or rate < 1 or duration <= 0 or tickets < 1 or dossier_events < 1:
        raise click.BadParameter("--clients, --rate, --duration, --tickets must be positive")
    run_live_benchmark(cli_settings(), clients, rate, duration, tickets, dossier_events)


@bench.command("review")
@click.option("--tickets", default=1_000_000, show_default=True, help="Tickets over a year.")
@click.option(
    "--dossier-events", default=1_000_000, show_default=True, help="Dossier events over a year."
)
@click.option(
    "--database",
    default=None,
    help="Load into (or reuse, when it has tickets) a kept database of this name.",
)
def bench_review(tickets: int, dossier_events: int, database: str | None) -> None:
    """Each review table over a year and a month, against the exact query over the tickets."""
    from ioc.bench.review import run_review_benchmark

    if tickets < 1 or dossier_events < 1:
        raise click.BadParameter("--tickets and --dossier-events must be positive")
    run_review_benchmark(cli_settings(), tickets, dossier_events, database)


@bench.command("wall")
@click.option("--open", "open_count", default=50_000, show_default=True, help="Open dossiers.")
@click.option("--finished", default=200_000, show_default=True, help="Finished dossiers.")
def bench_wall(open_count: int, finished: int) -> None:
    """The wall's dossier board, against its query before migration 0020, with both plans."""
    from ioc.bench.wall import run_wall_benchmark

    if open_count < 1 or finished < 0:
        raise click.BadParameter("--open must be positive and --finished not negative")
    run_wall_benchmark(cli_settings(), open_count, finished)


@bench.command("clients")
@click.option("--requests", default=3_000, show_default=True, help="POSTs per client library.")
@click.option("--concurrency", default=32, show_default=True, help="Concurrent requests.")
def bench_clients(requests: int, concurrency: int) -> None:
    """Client CPU per request of aiohttp and httpx driving the same load (why both are used)."""
    from ioc.bench.clients import run_clients_bench

    if requests < 1 or concurrency < 1:
        raise click.BadParameter("--requests and --concurrency must be positive")
    run_clients_bench(requests, concurrency)


@bench.command("failover")
@click.option("--servers", default=3, show_default=True, help="API processes on the cluster.")
@click.option("--rate", default=1_000.0, show_default=True, help="Field reports per second.")
@click.option(
    "--before", default=15.0, show_default=True, help="Seconds of ingest before the kill."
)
@click.option("--after", default=45.0, show_default=True, help="Seconds of ingest after the kill.")
@click.option("--clients", default=2, show_default=True, help="Websocket clients per process.")
@click.option(
    "--per-request",
    default=10,
    show_default=True,
    help="Field reports per request: 1 posts single events, more NDJSON batches.",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the cluster in this folder (default: a temporary one, removed after).",
)
@click.option("--fast", is_flag=True, help="Patroni's test timing instead of deploy/ha's.")
def bench_failover(
    servers: int,
    rate: float,
    before: float,
    after: float,
    clients: int,
    per_request: int,
    home: Path | None,
    fast: bool,
) -> None:
    """kill -9 the primary PostgreSQL of a Patroni cluster under steady ingest: outage, loss."""
    from ioc.bench.failover import cluster_home, measure_failover, report_lines
    from ioc.bench.harness import machine_line
    from ioc.ha.config import FAST, SHIPPED

    if min(servers, per_request) < 1 or min(rate, before, after) <= 0 or clients < 0:
        raise click.BadParameter(
            "--servers, --rate, --per-request, --before, --after must be positive"
        )
    timing = FAST if fast else SHIPPED
    with cluster_home(home) as folder:
        run = measure_failover(
            folder,
            servers=servers,
            rate=rate,
            per_request=per_request,
            before_s=before,
            after_s=after,
            clients_per_server=clients,
            timing=timing,
        )
    for line in report_lines(run, timing):
        click.echo(line)
    click.echo(machine_line("failover", run.figures()))


@bench.command("mqtt")
@click.option("--readings", default=100_000, show_default=True, help="Readings to publish.")
@click.option("--rate", default=25_000.0, show_default=True, help="Publishing pace, per second.")
@click.option("--batch-size", default=5_000, show_default=True)
@click.option("--publishers", default=2, show_default=True, help="Publishing processes.")
@click.option(
    "--per-message",
    default=1,
    show_default=True,
    help="Readings per message: 1 as a counter publishes, more as a gateway's JSON array.",
)
@click.option(
    "--subscribers",
    default=1,
    show_default=True,
    help="Subscriber processes, members of one MQTT share group (IOC_MQTT_SHARE_GROUP).",
)
def bench_mqtt(
    readings: int, rate: float, batch_size: int, publishers: int, per_message: int, subscribers: int
) -> None:
    """Readings through Mosquitto into the store (publish → commit), against HTTP batches."""
    from ioc.bench.mqtt import run_mqtt_bench

    if min(readings, publishers, per_message, subscribers) < 1 or rate <= 0:
        raise click.BadParameter(
            "--readings, --rate, --publishers, --per-message, --subscribers must be positive"
        )
    run_mqtt_bench(cli_settings(), readings, rate, batch_size, publishers, per_message, subscribers)


@bench.command("multi")
@click.option("--singles", default=3_000, show_default=True, help="Single-reading POSTs a round.")
@click.option("--batches", default=60, show_default=True, help="Small batches a round.")
@click.option("--batch-size", default=100, show_default=True, help="Readings per batch.")
@click.option("--parallel", default=24, show_default=True, help="Connections, over all processes.")
@click.option("--commits", default=300, show_default=True, help="Transactions per connection (db).")
def bench_multi(singles: int, batches: int, batch_size: int, parallel: int, commits: int) -> None:
    """Ingest through 1 and 3 processes, live notices on and off, and the database's ceiling."""
    from ioc.bench.multi import run_multi_bench

    if min(singles, batches, batch_size, parallel, commits) < 1:
        raise click.BadParameter("every size must be positive")
    run_multi_bench(cli_settings(), singles, batches, batch_size, parallel, commits)
