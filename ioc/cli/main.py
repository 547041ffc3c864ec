"""The ``ioc`` command line."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import psycopg

from ioc import logs
from ioc.errors import IocError
from ioc.settings import Settings, describe_settings, load_settings
from ioc.store import migrate
from ioc.store.database import DatabaseLocation, with_timezone

T = TypeVar("T")


def _settings(quiet: str = "WARNING") -> Settings:
    """The settings, with logging set up: ``quiet`` unless -v or IOC_LOG_LEVEL asks for more."""
    try:
        settings = load_settings()
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    context = click.get_current_context(silent=True)
    verbose = int(context.find_root().params.get("verbose") or 0) if context else 0
    explicit = settings.log_level if "log_level" in settings.model_fields_set else None
    logs.configure(settings.log_format, *logs.levels(verbose, explicit, quiet))
    return settings


def _with_database(
    settings: Settings, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
) -> T:
    """Run ``work`` on a connection to the migrated database (embedded or configured)."""
    with DatabaseLocation(settings) as location:
        migrate.upgrade(location.url, settings.timescale)

        async def run() -> T:
            url = with_timezone(location.url, settings.timezone)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                return await work(conn)

        try:
            return asyncio.run(run())
        except IocError as exc:
            raise click.ClickException(exc.message) from None


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

    settings = _settings(quiet="INFO")
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


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (safe to run twice, or from two processes at once)."""
    settings = _settings()
    with DatabaseLocation(settings) as location:
        applied = migrate.upgrade(location.url, settings.timescale)
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
    else:
        click.echo("the database is up to date")


@main.group()
def keys() -> None:
    """API keys (hashed at rest; the key itself is shown once)."""


@keys.command("create")
@click.option(
    "--role",
    default="source",
    show_default=True,
    type=click.Choice(["source", "operator", "agency", "leader", "admin"]),
)
@click.option("--source", help="For a source key: the source name it posts for (e.g. hue-s).")
@click.option("--agency", help="For an agency key: the agency code it works for.")
@click.option("--label", default="", help="A note on who holds the key.")
def keys_create(role: str, source: str | None, agency: str | None, label: str) -> None:
    """Create a key and print it once."""
    from ioc.store.keys import create_key

    key, key_id = _with_database(
        _settings(), lambda conn: create_key(conn, role, source, agency, label)
    )
    click.echo(key.token)
    click.echo(
        f"key {key.prefix} (id {key_id}, role {role}) created; store it now, "
        "it cannot be shown again",
        err=True,
    )


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
def keys_list(include_revoked: bool) -> None:
    """List keys (never their secrets)."""
    from ioc.store.keys import list_keys

    rows = _with_database(_settings(), lambda conn: list_keys(conn, include_revoked))
    click.echo(f"{'prefix':<14}{'role':<10}{'source':<16}{'agency':<16}{'created':<27}revoked")
    for k in rows:
        click.echo(
            f"{k.prefix:<14}{k.role:<10}{k.source or '-':<16}{k.agency or '-':<16}"
            f"{k.created_at.isoformat(timespec='seconds'):<27}"
            f"{k.revoked_at.isoformat(timespec='seconds') if k.revoked_at else '-'}"
        )


@keys.command("revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key with this prefix (takes effect within IOC_KEY_CACHE_S seconds)."""
    from ioc.store.keys import revoke_key

    _with_database(_settings(), lambda conn: revoke_key(conn, prefix))
    click.echo(f"revoked {prefix}")


@main.group()
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
    stored = _with_database(_settings(), lambda conn: upsert_sensors(conn, good))
    click.echo(f"registered {stored} sensors")


@main.group()
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
    counts = _with_database(_settings(), lambda conn: apply_config(conn, parsed))
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()) + f" loaded from {file.name}")


@config.command("show")
def config_show() -> None:
    """Print the current configuration as JSON."""
    import msgspec

    from ioc.routing.rules import dump_config

    current = _with_database(_settings(), dump_config)
    click.echo(msgspec.json.format(msgspec.json.encode(current)).decode())


@main.command()
@click.option("--port", type=int, help="Port to serve on (default: IOC_PORT).")
@click.option("--seed", default=7, show_default=True, help="Simulator random seed.")
def demo(port: int | None, seed: int) -> None:
    """Run the platform with a simulator streaming a plausible province."""
    from ingest.demo import run_demo

    settings = _settings(quiet="INFO")
    run_demo(settings, port or settings.port, seed)


@main.command()
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
    from ingest.replay import ReplayOptions, replay_file

    settings = _settings()
    if url is None:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        url = f"http://{host}:{settings.port}"
    renames: dict[str, str] = {}
    for column, field in _pairs(columns, "--column", "COLUMN=FIELD").items():
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
                constants=_pairs(constants, "--set"),
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


def _pairs(items: tuple[str, ...], option: str, form: str = "FIELD=VALUE") -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not of the form {form}", param_hint=option)
        pairs[name.strip()] = value.strip()
    return pairs


@main.group()
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

    settings = _settings()
    lines = [
        machine_line("route", run_route_benchmark(settings, 200_000, 20_000, 2_000)),
        machine_line("ingest", run_ingest_bench(settings, 50_000, 5_000, 3_000, 32)),
        machine_line("sla", run_sla_benchmark(settings, 100_000, 20_000, 5_000)),
        machine_line("live", run_live_benchmark(settings, 50, 500, 5.0, 100_000, 100_000)),
        machine_line("review", run_review_benchmark(settings, 100_000, 100_000, None)),
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

    run_ingest_bench(_settings(), events, batch_size, single, concurrency)


@bench.command("route")
@click.option("--points", default=1_000_000, show_default=True, help="Random points to locate.")
@click.option("--reports", default=50_000, show_default=True, help="Field reports to ingest.")
@click.option("--batch-size", default=2_000, show_default=True)
def bench_route(points: int, reports: int, batch_size: int) -> None:
    """Geo-routing against geopandas.sjoin, and field reports to routed tickets end to end."""
    from ioc.bench.route import run_route_benchmark

    run_route_benchmark(_settings(), points, reports, batch_size)


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
    run_sla_benchmark(_settings(), tickets, small, batch)


@bench.command("hostile")
@click.option("--seconds", default=20.0, show_default=True, help="Length of each phase.")
def bench_hostile(seconds: float) -> None:
    """/healthz p99 and server RSS while the worst bodies the limits allow are processed."""
    from ioc.bench.hostile import run_hostile_bench

    run_hostile_bench(_settings(), seconds)


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
    run_live_benchmark(_settings(), clients, rate, duration, tickets, dossier_events)


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
    run_review_benchmark(_settings(), tickets, dossier_events, database)


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
    run_multi_bench(_settings(), singles, batches, batch_size, parallel, commits)


@main.group("import")
def import_group() -> None:
    """History from other systems, with its own timestamps."""


@import_group.command("requests")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default="baltimore-311", show_default=True, help="Source name.")
@click.option(
    "--zone", default="America/New_York", show_default=True, help="Zone of the file's times."
)
def import_requests(file: Path, source: str, zone: str) -> None:
    """Import an Open Baltimore 311 CSV export as tickets (created, due and closed times kept).

    Office time is counted on a US calendar (Monday–Friday 08:30–16:30, federal holidays
    off) in ZONE. Running it again imports only requests not imported before.
    """
    from ingest.requests311 import import_history, read_baltimore_csv, us_calendar

    try:
        calendar = us_calendar(zone)
    except ValueError as exc:
        raise click.ClickException(f"--zone: {exc}") from None
    try:
        read = read_baltimore_csv(file, zone)
    except IocError as exc:
        raise click.ClickException(exc.message) from None
    for problem in read.problems[:20]:
        click.echo(f"{file}: {problem}: left out", err=True)
    if len(read.problems) > 20:
        click.echo(f"{file}: … and {len(read.problems) - 20} more rows left out", err=True)
    result = _with_database(
        _settings(), lambda conn: import_history(conn, read.requests, calendar, source)
    )
    click.echo(str(result))


@main.command("settings")
def show_settings() -> None:
    """Show every setting: its variable, current value and meaning (secrets masked)."""
    current = _settings().shown()
    for variable, _default, meaning in describe_settings():
        name = variable.removeprefix("IOC_").lower()
        click.echo(f"{variable}={current.get(name)}  # {meaning}")


def _register() -> None:
    from ioc.cli.jurisdictions import jurisdictions

    main.add_command(jurisdictions)
    from ioc.cli.alerts import alerts

    main.add_command(alerts)


_register()

if __name__ == "__main__":
    sys.exit(main())
