"""Field reports filed while their database connection dies inside a pipeline: the client gets
the one 503 answer (store unavailable, Retry-After), nothing of the request is stored half-way,
no connection is left in pipeline mode for another request, and the next post is stored."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from ioc.tickets.writing import ONE_STATEMENT_ROWS
from tests.conftest import RunningServer, auth, make_key
from tests.test_filing import CONFIG, HCM, NDJSON, report

# Once: the backend that writes the first live notice (inside the last pipeline of filing
# field reports, ioc.tickets.filing) terminates itself, as a backend does when its server goes.
ONE_SHOT = """
CREATE SEQUENCE test_shots;
CREATE FUNCTION test_die() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('test_shots') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(30);  -- ended by the termination
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_die BEFORE INSERT ON live_log FOR EACH ROW EXECUTE FUNCTION test_die();
"""
STUCK = "not allowed in pipeline mode"


@pytest.fixture
def source(client: httpx.Client, server: RunningServer, admin_key: str) -> str:
    answer = client.put("/v1/admin/config", json=CONFIG, headers=auth(admin_key))
    assert answer.status_code == 200, answer.text
    return make_key(server, "source", source="hue-f")


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING)
    yield caplog


def post(client: httpx.Client, key: str, reports: list[dict[str, Any]]) -> httpx.Response:
    if len(reports) == 1:
        return client.post("/v1/events", json=reports[0], headers=auth(key))
    body = "\n".join(json.dumps(r) for r in reports)
    return client.post("/v1/events/batch", content=body, headers=auth(key) | NDJSON)


def stored(server: RunningServer) -> dict[str, tuple[Any, ...]]:
    """Per stored report: its ticket, whether that ticket exists and has its opening event."""
    with psycopg.connect(server.db_url) as conn:
        rows = conn.execute(
            "SELECT f.external_id, f.ticket_id, t.id IS NOT NULL,"
            " EXISTS (SELECT FROM ticket_events e WHERE e.ticket_id = t.id AND e.action = 'open')"
            " FROM field_reports f LEFT JOIN tickets t ON t.id = f.ticket_id"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) >= 1
    error = answer.json()["error"]
    assert error["code"] == "store_unavailable" and "retry later" in error["message"]
    assert set(answer.json()) == {"error"} and set(error) == {"code", "message", "details"}


# One report (a single POST), a few (their tickets written by one statement in the pipeline)
# and many (tickets by COPY, then the pipeline): the backend dies in the last pipeline.
@pytest.mark.parametrize("count", [1, 3, ONE_STATEMENT_ROWS + 1], ids=["single", "few", "many"])
def test_a_backend_terminated_inside_the_pipeline_answers_503_and_stores_nothing(
    client: httpx.Client,
    server: RunningServer,
    source: str,
    warnings: pytest.LogCaptureFixture,
    count: int,
) -> None:
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute(ONE_SHOT)
    when = datetime.now(HCM).replace(microsecond=0) - timedelta(minutes=5)
    answer = post(client, source, [report(n, "moi_truong", when) for n in range(count)])
    assert_unavailable(answer)
    assert stored(server) == {}
    with psycopg.connect(server.db_url) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM ticket_events),"
            " (SELECT count(*) FROM ticket_clocks), (SELECT count(*) FROM live_log)"
        ).fetchone()
    assert left == (0, 0, 0, 0)
    # The same reports again, on a connection of their own: stored, each with its ticket.
    again = post(client, source, [report(n, "moi_truong", when) for n in range(count)])
    assert again.status_code in (200, 201), again.text
    everything = stored(server)
    assert sorted(everything) == sorted(f"F-{n}" for n in range(count))
    assert all(row[1:] == (True, True) for row in everything.values()), everything
    assert not [r for r in warnings.records if STUCK in r.getMessage()]


class Killer(threading.Thread):
    """Terminates, at random moments, the platform's backends that are filing field reports."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.shots = 0

    def run(self) -> None:
        chance = random.Random(12)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                pids = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'ioc' AND xact_start IS NOT NULL"
                    " AND query ~ '(field_reports|tickets|live_log|ioc_filing)'"
                    " AND pid <> pg_backend_pid()"
                ).fetchall()
                if not pids:
                    continue
                self.stop.wait(chance.random() * 0.004)
                for (pid,) in pids:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    self.shots += 1


def test_backends_terminated_at_any_moment_of_filing_leave_no_half_written_request(
    client: httpx.Client, server: RunningServer, source: str, warnings: pytest.LogCaptureFixture
) -> None:
    when = datetime.now(HCM).replace(microsecond=0) - timedelta(minutes=5)
    killer = Killer(server.db_url)
    killer.start()
    answers: list[tuple[list[str], int]] = []
    try:
        for round_ in range(150):
            reports = [report(round_ * 3 + n, "moi_truong", when) for n in range(3)]
            answer = post(client, source, reports)
            if answer.status_code != 200:
                assert_unavailable(answer)
            answers.append(([r["external_id"] for r in reports], answer.status_code))
    finally:
        killer.stop.set()
        killer.join()
    assert killer.shots > 0
    everything = stored(server)
    for ids, status in answers:
        kept = [i for i in ids if i in everything]
        # All or nothing; an acknowledged request is stored whole (a request refused while
        # its COMMIT was on the way may have been stored).
        assert kept in ([], ids), (ids, status, kept)
        if status == 200:
            assert kept == ids
    assert all(row[1:] == (True, True) for row in everything.values()), everything
    assert not [r for r in warnings.records if STUCK in r.getMessage()]
    # The platform may have shut its gate meanwhile (it saw connections die): once it is ready
    # again, the next report is stored.
    for _ in range(300):
        if client.get("/readyz").status_code == 200 and server.platform.pool.gate.up:
            break
        threading.Event().wait(0.1)
    final = post(client, source, [report(450, "moi_truong", when)])
    assert final.status_code == 201, final.text
