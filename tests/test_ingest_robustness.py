"""Ingest under stress: WebSocket gateways, concurrent repeats, a failing or missing database."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest
import websockets
from psycopg import sql

from ioc.settings import Settings
from tests.conftest import RunningServer, auth, start_server, stop_server
from tests.test_ingest_api import NDJSON, count, ndjson, reading, report


async def _gateway(server: RunningServer, key: str, messages: list[str]) -> list[dict[str, Any]]:
    acks = []
    async with websockets.connect(
        f"{server.ws_url}/v1/events/ws", additional_headers=auth(key)
    ) as socket:
        for message in messages:
            await socket.send(message)
            acks.append(json.loads(await socket.recv()))
    return acks


def test_websocket_acknowledges_each_message(
    server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    messages = [
        ndjson(reading(sensors[0], 1), reading(sensors[0], 2)).decode(),
        json.dumps([reading(sensors[0], 2), reading(sensors[0], 3) | {"interval_s": -5}]),
        json.dumps(report("WS-1")),
        "{not json",
    ]
    acks = asyncio.run(_gateway(server, source_key, messages))
    assert [a["seq"] for a in acks] == [1, 2, 3, 4]
    assert (acks[0]["accepted"], acks[0]["duplicates"]) == (2, 0)
    assert (acks[1]["accepted"], acks[1]["duplicates"], acks[1]["rejected"]) == (0, 1, 1)
    assert acks[1]["errors"][0]["field"] == "interval_s"
    assert acks[2]["accepted"] == 1
    assert acks[3]["status"] == 422 and "malformed JSON" in acks[3]["errors"][0]["reason"]
    assert count(server, "traffic_readings") == 2


def test_websocket_without_key_is_closed(server: RunningServer) -> None:
    async def attempt() -> None:
        async with websockets.connect(f"{server.ws_url}/v1/events/ws") as socket:
            await socket.recv()

    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        asyncio.run(attempt())
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_concurrent_repeats_are_stored_once(
    server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    """Many clients send the same events at once: each is stored exactly once."""
    body = ndjson(*(reading(sensors[1], m) for m in range(20)), report("SAME"))
    single = report("SAME-SINGLE")
    results: list[int] = []
    outcomes: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            answer = c.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
            results.append(answer.json()["accepted"])
            one = c.post("/v1/events", json=single, headers=auth(source_key))
            outcomes.append(one.json()["status"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 21
    assert sorted(outcomes) == ["accepted"] + ["duplicate"] * 7
    assert count(server, "traffic_readings") == 20
    assert count(server, "field_reports") == 2


def test_concurrent_single_readings_with_repeats_are_stored_once(
    server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    """Single readings released at once share group commits; one of them sent five times is
    stored once, and a replay afterwards is a duplicate too."""
    events = [reading(sensors[0], 30 + m) for m in range(10)] + [reading(sensors[1], 50)] * 5
    statuses: list[int] = [0] * len(events)
    start = threading.Barrier(len(events))

    def post(index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            start.wait()
            statuses[index] = c.post(
                "/v1/events", json=events[index], headers=auth(source_key)
            ).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses[:10] == [201] * 10
    assert sorted(statuses[10:]) == [200, 200, 200, 200, 201]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        again = c.post("/v1/events", json=events[0], headers=auth(source_key))
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert count(server, "traffic_readings") == 11


def test_a_database_error_mid_batch_stores_nothing(
    server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                        $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$""")
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON field_reports FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    body = ndjson(reading(sensors[0], 1), reading(sensors[0], 2), report("FIRE"))
    with httpx.Client(base_url=server.url) as c:
        answer = c.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert count(server, "traffic_readings") == 0


@pytest.fixture
def fragile_server(db_url: str, settings: Settings) -> Any:
    thread, running = start_server(settings.model_copy(update={"pool_timeout_s": 1.0}))
    yield running
    stop_server(thread)


def _set_connections(db_url: str, allowed: bool) -> None:
    name = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    admin = psycopg.conninfo.make_conninfo(db_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(name)), sql.SQL("true" if allowed else "false")
            )
        )
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )


def test_unreachable_database_answers_503_and_loses_nothing(
    fragile_server: RunningServer, db_url: str
) -> None:
    from tests.conftest import make_key

    key = make_key(fragile_server, "source", source="hue-s")
    with httpx.Client(base_url=fragile_server.url, timeout=30) as c:
        assert c.post("/v1/events", json=report("BEFORE"), headers=auth(key)).status_code == 201
        _set_connections(db_url, False)
        try:
            down = c.post("/v1/events", json=report("DURING"), headers=auth(key))
            assert down.status_code == 503, down.text
            assert down.headers["Retry-After"]
            assert down.json()["error"]["code"] == "store_unavailable"
            assert c.get("/readyz").status_code == 503
        finally:
            _set_connections(db_url, True)
        # The client retries what was refused, after a pause; the pool reconnects by itself.
        for _ in range(100):
            again = c.post("/v1/events", json=report("DURING"), headers=auth(key))
            if again.status_code != 503:
                break
            time.sleep(0.1)
        assert again.status_code == 201
    assert count(fragile_server, "field_reports") == 2
