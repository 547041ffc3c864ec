"""Failover: kill -9 the primary PostgreSQL of a Patroni cluster under steady ingest.

The cluster (two PostgreSQL 15 nodes, synchronous replication, one etcd) runs from Debian's
packages, installed by the test when it runs as root; without them (and without root) the
test fails and says what to install. Two ``ioc serve`` processes use it through a multi-host
URL; Patroni's timing is the quick one (ttl 20 s, loop_wait 1 s).
"""

from __future__ import annotations

import math

import pytest

from ioc.bench.failover import FailoverRun, cluster_home, measure_failover
from ioc.ha.config import FAST
from ioc.ha.packages import MissingPackages, ensure_packages


@pytest.fixture(scope="module")
def failover_run() -> FailoverRun:
    try:
        ensure_packages()
    except MissingPackages as exc:
        pytest.fail(str(exc))
    with cluster_home(None) as home:
        return measure_failover(
            home,
            servers=2,
            rate=50.0,
            before_s=8.0,
            after_s=15.0,
            clients_per_server=1,
            timing=FAST,
        )


def test_a_replica_is_promoted(failover_run: FailoverRun) -> None:
    run = failover_run
    assert run.promoted not in (run.killed, "none")


def test_the_api_serves_again_by_itself(failover_run: FailoverRun) -> None:
    run = failover_run
    assert run.failed_requests > 0  # the kill was felt
    assert not math.isnan(run.outage_s)
    assert run.rate_after > 0


def test_no_acknowledged_event_is_lost(failover_run: FailoverRun) -> None:
    run = failover_run
    assert run.acked > 0 and run.lost == 0


def test_no_alert_is_raised_twice(failover_run: FailoverRun) -> None:
    run = failover_run
    assert run.alerts > 0 and run.duplicate_alerts == 0


def test_websocket_clients_catch_up(failover_run: FailoverRun) -> None:
    run = failover_run
    assert not math.isnan(run.caught_up_s) and run.clients_behind == 0
