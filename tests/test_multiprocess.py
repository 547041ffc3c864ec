"""Several `ioc serve` processes on one database: live feeds, failover of clients, the upkeep
leader, the alert engines and webhook deliveries, and `ioc serve --workers N`."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ioc.routing.rules import apply_config, parse_config
from tests.cluster import FeedClient, Process, cluster, key, start, wait_until
from tests.conftest import auth
from tests.test_webhooks import Receiver, receiver  # noqa: F401 (a fixture)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NDJSON = {"Content-Type": "application/x-ndjson"}
AGENCY = "so-tnmt"  # takes the environment reports (configure)


def report(n: int, category: str, opened: datetime) -> dict[str, Any]:
    # About a kilometre apart, so no report joins another's ticket.
    return {
        "kind": "field_report",
        "external_id": f"M-{n}",
        "category": category,
        "description": f"Phản ánh số {n}",
        "lon": round(107.40 + (n % 40) * 0.01, 6),
        "lat": round(16.30 + (n // 40) * 0.01, 6),
        "occurred_at": opened.isoformat(),
        "reporter": {"name": "Lê Văn C", "phone": "0900000003"},
    }


def post_round_robin(
    processes: list[Process], source: str, reports: list[dict[str, Any]], per_request: int = 2
) -> None:
    """Post the reports in small batches, each batch to the next process in turn."""
    for index, start_at in enumerate(range(0, len(reports), per_request)):
        chunk = reports[start_at : start_at + per_request]
        body = "\n".join(json.dumps(r, ensure_ascii=False) for r in chunk).encode()
        target = processes[index % len(processes)]
        answer = httpx.post(
            f"{target.url}/v1/events/batch",
            content=body,
            headers=auth(source) | NDJSON,
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["accepted"] == len(chunk), answer.text


def tickets(db_url: str, agency: str | None = None) -> set[int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id FROM tickets WHERE %s::text IS NULL OR agency = %s", (agency, agency)
        ).fetchall()
    return {int(r[0]) for r in rows}


def leaders(processes: list[Process], watcher: str) -> list[Process]:
    """The processes leading upkeep, as ``/healthz`` tells a watcher (operator or admin key)."""
    found = []
    for process in processes:
        health = httpx.get(f"{process.url}/healthz", headers=auth(watcher), timeout=5).json()
        if health["upkeep_leader"]:
            found.append(process)
    return found


def test_three_processes_feed_every_client_once_and_clients_resume_after_a_kill(
    db_url: str, tmp_path: Path
) -> None:
    configure(db_url)
    with cluster(db_url, tmp_path, 3) as processes:
        source = key(db_url, "source", source="hue-s")
        operator = key(db_url, "operator")
        agency = key(db_url, "agency", agency=AGENCY)
        urls = [p.ws_url for p in processes]
        clients: list[tuple[str, FeedClient]] = []
        for n in range(3):
            mine = urls[n:] + urls[:n]  # its own process first, then the others
            clients += [
                ("all", FeedClient(mine, "/v1/tickets/ws", operator)),
                ("agency", FeedClient(mine, "/v1/tickets/ws", agency)),
                ("all", FeedClient(mine, "/v1/wall/ws", operator, wall=True)),
            ]
        wait_until(lambda: all(c.connected for _, c in clients), "every client connected")

        # Exactly one process leads the upkeep.
        wait_until(lambda: len(leaders(processes, operator)) == 1, "one upkeep leader")
        leader = leaders(processes, operator)[0]
        opened = datetime.now(HCM).replace(microsecond=0)
        categories = ("moi_truong", "giao_thong")
        first = [report(n, categories[n % 2], opened) for n in range(30)]
        post_round_robin(processes, source, first)

        def entitled(kind: str) -> set[int]:
            return tickets(db_url, AGENCY if kind == "agency" else None)

        def caught_up() -> bool:
            return all(set(c.received()) >= entitled(kind) for kind, c in clients)

        wait_until(caught_up, "every client heard the first reports")

        # Kill the leader. Its clients hold back from reconnecting while more reports arrive
        # (so they have something to catch up on), then resume on another process.
        killed = processes.index(leader)
        stranded = [c for _, c in clients[3 * killed : 3 * killed + 3]]
        for client in stranded:
            client.gate.clear()
        leader.kill()
        wait_until(lambda: not any(c.connected for c in stranded), "the killed clients noticed")
        alive = [p for p in processes if p is not leader]
        second = [report(n, categories[n % 2], opened) for n in range(30, 60)]
        post_round_robin(alive, source, second[:20])
        for client in stranded:
            client.gate.set()
        post_round_robin(alive, source, second[20:])
        wait_until(caught_up, "every client heard every report, the stranded ones too")

        # A new leader took over by itself.
        wait_until(lambda: len(leaders(alive, operator)) == 1, "a new upkeep leader")
        for kind, client in clients:
            client.stop()
            heard = client.received()
            assert Counter(heard).most_common(1)[0][1] == 1, "a ticket was heard twice"
            assert set(heard) == entitled(kind)
            assert client.resyncs == 0 and client.errors == []
            assert client.seqs == sorted(client.seqs) and len(set(client.seqs)) == len(client.seqs)
        assert len(entitled("all")) == 60 and 0 < len(entitled("agency")) < 60
        for client in stranded:
            assert client.connections == 2  # its own process, then one other


def test_a_cursor_older_than_the_log_gets_a_resync(db_url: str, tmp_path: Path) -> None:
    with cluster(db_url, tmp_path, 1) as processes:
        source = key(db_url, "source", source="hue-s")
        operator = key(db_url, "operator")
        opened = datetime.now(HCM).replace(microsecond=0)
        post_round_robin(processes, source, [report(n, "moi_truong", opened) for n in range(4)])
        with psycopg.connect(db_url) as conn:
            conn.execute("DELETE FROM live_commits WHERE last_seq <= 2")  # as the upkeep prunes
        late = FeedClient([processes[0].ws_url], "/v1/tickets/ws", operator, after=1)
        wait_until(lambda: late.resyncs == 1, "a resync")
        current = FeedClient([processes[0].ws_url], "/v1/tickets/ws", operator, after=2)
        wait_until(lambda: len(current.received()) == 2, "the two notices still kept")
        # A cursor that is not one is refused with the reason.
        url = f"{processes[0].ws_url}/v1/tickets/ws?after=x"
        with (
            connect(url, additional_headers=auth(operator)) as socket,
            pytest.raises(ConnectionClosed) as closed,
        ):
            socket.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "after" in closed.value.rcvd.reason
        for client in (late, current):
            client.stop()
        assert current.resyncs == 0 and current.seqs == [3, 4]


def configure(db_url: str, hook: str | None = None) -> None:
    """so-tnmt takes environment reports (a ten-hour deadline), with a webhook if given."""
    webhook = {"webhook_url": hook, "webhook_secret": "s3cret-s3cret-s3cret"} if hook else {}
    config = parse_config(
        {
            "agencies": [
                {"code": "ubnd-tp", "name_vi": "UBND thành phố Huế"},
                {
                    "code": AGENCY,
                    "name_vi": "Sở Tài nguyên và Môi trường",
                    "parent": "ubnd-tp",
                    **webhook,
                },
            ],
            "rules": [{"category": "moi_truong", "agency": "so-tnmt"}],
            "deadlines": [
                {"subject": "ticket", "key": "moi_truong", "unit": "calendar_hours", "amount": 10}
            ],
        },
        "test",
    )

    async def apply() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await apply_config(conn, config)

    asyncio.run(apply())


def test_three_engines_raise_each_alert_once_and_deliver_each_message_once(
    db_url: str,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811 (the fixture imported above)
) -> None:
    configure(db_url, f"{receiver.url}/hook")  # before the processes start: all load it
    engine = {
        "IOC_SLA_TICK_S": "0.2",
        "IOC_SLA_BATCH": "7",  # small batches: the processes take turns within one tick
        "IOC_SLA_BACKFILL_GRACE_S": str(3 * 86400),
    }
    with cluster(db_url, tmp_path, 3, **engine) as processes:
        source = key(db_url, "source", source="hue-s")
        operator = key(db_url, "operator")
        urls = [p.ws_url for p in processes]
        feeds = [FeedClient(urls[n:] + urls[:n], "/v1/alerts/ws", operator) for n in range(3)]
        wait_until(lambda: all(f.connected for f in feeds), "alert feeds connected")
        assert _hubs(db_url) == 3  # three processes, each running the engines
        opened = datetime.now(HCM).replace(microsecond=0) - timedelta(days=2)
        reports = [report(n, "moi_truong", opened) for n in range(40)]
        post_round_robin(processes, source, reports, per_request=4)

        # Two days past a ten-hour deadline, untouched: overdue, then escalated, per ticket.
        def raised() -> list[tuple[Any, ...]]:
            with psycopg.connect(db_url) as conn:
                return conn.execute(
                    "SELECT subject_id, level FROM alerts WHERE rule = 'deadline'"
                ).fetchall()

        wait_until(lambda: len(raised()) >= 80, "every alert raised")
        # Each alert is sent to so-tnmt (an escalation also to ubnd-tp, which has no hook).
        wait_until(lambda: len(receiver.at("/hook")) >= 80, "every alert delivered")
        wait_until(lambda: all(len(f.received()) >= 80 for f in feeds), "feeds heard them")
        time.sleep(1.0)  # a second more for a duplicate to show up, were there one
        rows = raised()
        assert len(rows) == len(set(rows)) == 80
        assert Counter(level for _, level in rows) == {"overdue": 40, "escalated": 40}
        keys = [r.headers["idempotency-key"] for r in receiver.at("/hook")]
        assert len(keys) == len(set(keys)) == 80
        with psycopg.connect(db_url) as conn:
            alert_ids = {int(r[0]) for r in conn.execute("SELECT id FROM alerts").fetchall()}
        for feed in feeds:
            feed.stop()
            heard = feed.received()
            assert set(heard) == alert_ids and len(heard) == len(alert_ids)
            assert len(set(feed.seqs)) == len(feed.seqs)


def test_serve_with_workers_shares_metrics_and_elects_one_leader(
    db_url: str, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    process = start(
        db_url, tmp_path, "workers", "--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    )
    try:
        source = key(db_url, "source", source="hue-s")
        admin = key(db_url, "admin")
        # Two workers, each with its own live hub connection.
        wait_until(lambda: _hubs(db_url) == 2, "two workers listening")
        opened = datetime.now(HCM).replace(microsecond=0)
        for n in range(12):
            # A new connection each time: the kernel hands them to either worker.
            answer = httpx.post(
                f"{process.url}/v1/events",
                json=report(n, "moi_truong", opened),
                headers=auth(source),
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
        pids = {
            httpx.get(f"{process.url}/healthz", headers=auth(admin), timeout=5).json()["pid"]
            for _ in range(20)
        }
        assert pids  # (which workers answered is the kernel's choice)

        def scrape() -> str:
            return httpx.get(f"{process.url}/metrics", headers=auth(admin), timeout=10).text

        # Whichever worker answers, it counts every worker's events, and one leader.
        wait_until(lambda: "ioc_upkeep_leader 1.0" in scrape(), "one leader in the metrics")
        for _ in range(5):
            text = scrape()
            assert (
                'ioc_events_total{kind="field_report",outcome="accepted",source="hue-s"} 12.0'
                in text
            )
            assert "ioc_upkeep_leader 1.0" in text
        assert list(metrics_dir.glob("counter_*.db"))
    finally:
        process.stop()
    assert process.popen.returncode == 0


def _hubs(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ioc-live'"
            " AND datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_three_traffic_watches_raise_each_silent_sensor_once(db_url: str, tmp_path: Path) -> None:
    """The traffic watch runs in every process; a sensor gone quiet is one alert, not three."""
    watch = {"IOC_TRAFFIC_CHECK_S": "0.2"}
    with cluster(db_url, tmp_path, 3, **watch) as processes:
        admin, source = key(db_url, "admin"), key(db_url, "source", source="hue-s")
        sensors = [f"MP-TS-{n:02d}" for n in range(12)]
        body = [
            {"sensor_id": s, "lon": 107.50 + n * 0.005, "lat": 16.45, "name": f"Nút giao {n}"}
            for n, s in enumerate(sensors)
        ]
        answer = httpx.post(
            f"{processes[0].url}/v1/sensors", json=body, headers=auth(admin), timeout=30
        )
        assert answer.status_code == 200, answer.text
        # Each sensor's one reading is an hour old: far past three one-minute intervals.
        hour_ago = datetime.now(HCM).replace(microsecond=0) - timedelta(hours=1)
        for n, sensor in enumerate(sensors):
            line = {
                "kind": "traffic_count",
                "sensor_id": sensor,
                "observed_at": hour_ago.isoformat(),
                "interval_s": 60,
                "vehicle_count": 12,
                "avg_speed_kmh": 35.0,
            }
            answer = httpx.post(
                f"{processes[n % 3].url}/v1/events/batch",
                content=json.dumps(line) + "\n",
                headers=auth(source) | NDJSON,
                timeout=30,
            )
            assert answer.status_code == 200 and answer.json()["rejected"] == 0, answer.text

        def silent() -> list[tuple[Any, ...]]:
            with psycopg.connect(db_url) as conn:
                return conn.execute(
                    "SELECT subject_id FROM alerts WHERE rule = 'silent'"
                ).fetchall()

        wait_until(lambda: len(silent()) >= len(sensors), "every quiet sensor alerted")
        time.sleep(
            1.0
        )  # five more checks in each process for a duplicate to show up, were there one
        rows = silent()
        assert sorted(r[0] for r in rows) == sensors
