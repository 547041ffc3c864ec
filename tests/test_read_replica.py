"""IOC_READ_DATABASE_URL: read-only work goes to its own pool, and to the primary while the
replica does not answer."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ioc.settings import Settings
from tests.conftest import RunningServer, free_port, start_server, stop_server


def _reader(url: str) -> str:
    """The same database under another application name (a stand-in for a standby)."""
    return make_conninfo("", **{**conninfo_to_dict(url), "application_name": "ioc-reader"})


@pytest.fixture(params=["answers", "is down"])
def read_server(
    request: pytest.FixtureRequest, settings: Settings
) -> Iterator[tuple[RunningServer, bool]]:
    """A server with a read URL, and whether that URL answers."""
    assert settings.database_url is not None
    if request.param == "answers":
        read_url = _reader(settings.database_url)
    else:
        read_url = f"postgresql://ioc@127.0.0.1:{free_port()}/ioc?connect_timeout=1"
    thread, running = start_server(settings.model_copy(update={"read_database_url": read_url}))
    yield running, request.param == "answers"
    stop_server(thread)


def test_reads_use_the_replica_while_it_answers(read_server: tuple[RunningServer, bool]) -> None:
    server, up = read_server
    platform = server.platform
    assert (platform.read_pool is not platform.pool) == up
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/open311/v2/services.json")
    assert response.status_code == 200, response.text
    assert any(s["service_code"] == "moi_truong" for s in response.json())

    async def readers() -> int:
        async with platform.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ioc-reader'"
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    assert (server.run(readers()) > 0) == up
