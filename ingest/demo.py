"""``ioc demo``: the platform plus a simulator posting a plausible province over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from datetime import date
from pathlib import Path

import click
import httpx
import uvicorn

from ingest.demo_feedback import rate_resolved
from ingest.demo_history import seed_history
from ingest.demo_officials import OfficialsAtWork
from ingest.demo_photos import post_with_photo, wants_photo
from ingest.simulator import Event, ProvinceSimulator, RealClock
from ioc.accounts import check_user
from ioc.api.app import create_app
from ioc.errors import Conflict
from ioc.platform import Platform
from ioc.routing.jurisdictions import read_boundary_file
from ioc.routing.rules import apply_config, read_config
from ioc.routing.synthetic import hue_wards_file
from ioc.settings import Settings
from ioc.store.jurisdictions import save_boundary_set
from ioc.store.keys import create_key
from ioc.store.reference import Sensor, upsert_sensors
from ioc.store.users import create_user, reset_password

log = logging.getLogger(__name__)
SOURCE = "simulator"
_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "hue-responsibility.toml"


async def _map(platform: Platform, workdir: Path) -> str:
    """Boundaries (Huế's real wards when at hand) and the example responsibility rules."""
    wards, real = hue_wards_file(workdir)
    boundaries = read_boundary_file(wards, "ward", date(2025, 7, 1)).boundaries
    async with platform.pool.connection() as conn:
        await save_boundary_set(conn, boundaries, wards.name)
        if _CONFIG.exists():
            await apply_config(conn, read_config(_CONFIG))
    await platform.reload_routing(force=True)
    return f"{len(boundaries)} {'real' if real else 'generated'} wards"


async def _register(platform: Platform, simulator: ProvinceSimulator) -> tuple[str, str]:
    """Register the simulated sensors; make a source key for the simulator and an operator key."""
    async with platform.pool.connection() as conn:
        await upsert_sensors(conn, [Sensor(**s) for s in simulator.sensors()])
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE label = 'ioc demo' AND revoked_at IS NULL"
        )
        source_key, _ = await create_key(conn, "source", SOURCE, None, "ioc demo")
        operator_key, _ = await create_key(conn, "operator", None, None, "ioc demo")
        await platform.reference.load(conn)
    return source_key.token, operator_key.token


# Two officials per agency, so each console has people to assign (``ioc users`` makes real ones).
_OFFICIALS = ("Nguyễn Thị Lan", "Trần Văn Minh")


async def _officials(platform: Platform) -> tuple[str, str, str]:
    """The demo's officials, created on the first run; returns the first agency's first
    official as (agency, login, a fresh password) to log in with."""
    now = platform.clock.now()
    async with platform.pool.connection() as conn:
        cur = await conn.execute("SELECT code FROM agencies ORDER BY code")
        agencies = [str(row[0]) for row in await cur.fetchall()]
        for code in agencies:
            for number, name in enumerate(_OFFICIALS, 1):
                with contextlib.suppress(Conflict):  # made by an earlier run
                    await create_user(
                        conn, check_user(f"{code}.{number}", name, "agency", code), None, now
                    )
        first = agencies[0]
        _, password = await reset_password(conn, f"{first}.1", None, now)
    return first, f"{first}.1", password


async def _demo(settings: Settings, port: int, seed: int) -> None:
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            raise click.ClickException("the server did not start (see the log above)")
        await asyncio.sleep(0.05)
    platform: Platform = app.state.platform
    simulator = ProvinceSimulator(RealClock(), seed=seed)
    with tempfile.TemporaryDirectory() as workdir:
        area = await _map(platform, Path(workdir))
    source_key, operator_key = await _register(platform, simulator)
    agency, login, password = await _officials(platform)
    base = f"http://{settings.host}:{port}"
    click.echo(
        f"\nIOC demo is running: open {base}/  (API docs: {base}/docs)\n"
        f"wall map: {base}/login, log in with the operator key: {operator_key}\n"
        f"agency console ({agency}): log in as {login} with the password {password} "
        f"(every agency has officials <code>.1 and <code>.2; ioc users reset-password)\n"
        f"reports are routed to agencies over {area} (rules: deploy/hue-responsibility.toml)\n"
        "a simulator is streaming field reports, traffic readings and dossier events "
        "(with citizens' ratings of returned dossiers and resolved tickets); "
        "Ctrl-C stops everything\n"
    )
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {source_key}"}
    ndjson = {"Content-Type": "application/x-ndjson"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

        async def sink(batch: list[Event]) -> None:
            # Some reports come with a drawn photo, posted one by one as a citizen's app would.
            photos = [e for e in batch if wants_photo(e)]
            batch = [e for e in batch if not wants_photo(e)]
            body = b"\n".join(httpx.Response(200, json=e).content for e in batch)
            try:
                for event in photos:
                    sent = await post_with_photo(client, event)
                    if sent.status_code not in (200, 201):
                        log.warning("simulator photo: %s %s", sent.status_code, sent.text[:500])
                if not batch:
                    return
                answer = await client.post("/v1/events/batch", content=body, headers=ndjson)
            except httpx.HTTPError as exc:
                log.warning("simulator could not post: %s", exc)
                return
            if answer.status_code != 200 or answer.json().get("rejected"):
                log.warning("simulator batch: %s %s", answer.status_code, answer.text[:500])

        simulating = asyncio.create_task(simulator.run(sink, stop=stop))
        working = asyncio.create_task(_history_then_work(platform, stop))
        rating = asyncio.create_task(
            rate_resolved(platform.pool, client, SOURCE, stop, seed, platform.clock)
        )
        await serving
        stop.set()
        working.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.gather(simulating, rating), 5)
        with contextlib.suppress(asyncio.CancelledError):
            await working


async def _history_then_work(platform: Platform, stop: asyncio.Event) -> None:
    """Three months of worked history (first run only), then officials on the live queue."""
    seeded = await seed_history(platform, platform.clock.now())
    if not seeded.skipped:
        click.echo(
            f"history seeded: {seeded.reports} field reports of the last 3 months "
            f"({seeded.worked} worked by the agencies' officials, {seeded.actions} moves), "
            f"{seeded.dossiers} dossiers through every channel, {seeded.ratings} ratings; "
            "the leaders' review (/review) has figures now"
        )
    await OfficialsAtWork(platform, platform.clock).run(stop)


def run_demo(settings: Settings, port: int, seed: int) -> None:
    asyncio.run(_demo(settings, port, seed))
