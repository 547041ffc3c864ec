"""Patroni's configuration for one node of the platform's cluster, and etcd's command line.

Patroni reads YAML; JSON is YAML too, so the files are written with the standard library.
``deploy/ha/patroni-node1.yml`` is the same configuration written out for a real host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ioc.ha.packages import PG_BIN, has_timescale

SCOPE = "ioc"
NAMESPACE = "/ioc/"


@dataclass(frozen=True)
class Timing:
    """How fast Patroni notices and acts (seconds); loop_wait + 2 × retry_timeout ≤ ttl."""

    ttl: int = 30
    loop_wait: int = 10
    retry_timeout: int = 10

    def __post_init__(self) -> None:
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise ValueError(
                f"Patroni timing: loop_wait {self.loop_wait} + 2 × retry_timeout "
                f"{self.retry_timeout} must not exceed ttl {self.ttl}"
            )


# What deploy/ha ships, and a quicker one for tests on a single machine.
SHIPPED = Timing(ttl=30, loop_wait=10, retry_timeout=10)
FAST = Timing(ttl=20, loop_wait=1, retry_timeout=3)


@dataclass(frozen=True)
class Node:
    name: str
    pg_port: int
    api_port: int
    home: Path  # the node's folder: data/, run/ (socket), patroni.yml, log

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"


@dataclass(frozen=True)
class Secrets:
    superuser: str
    replication: str
    rewind: str


def dynamic(timing: Timing) -> dict[str, Any]:
    """The cluster-wide settings Patroni keeps in etcd (written once, at bootstrap)."""
    return {
        "ttl": timing.ttl,
        "loop_wait": timing.loop_wait,
        "retry_timeout": timing.retry_timeout,
        # A crashed primary is not restarted in place first: fail over to the synchronous
        # standby at once (it holds every acknowledged transaction).
        "primary_start_timeout": 0,
        # Only the synchronous standby may be promoted, so a failover never loses a
        # transaction whose commit was acknowledged. Not strict: with the standby gone the
        # primary keeps accepting writes alone (on one copy) rather than stopping the city's
        # intake; Patroni makes the standby synchronous again once it has caught up.
        "synchronous_mode": True,
        "synchronous_mode_strict": False,
        "maximum_lag_on_failover": 16 * 1024 * 1024,
        # With etcd unreachable (one etcd is a single point of failure), the primary stays
        # primary as long as it can reach every other member, instead of demoting itself.
        "failsafe_mode": True,
        "postgresql": {
            "use_pg_rewind": True,
            # A node pg_rewind cannot bring back is cloned afresh from the new primary.
            "remove_data_directory_on_rewind_failure": True,
            "use_slots": True,
            "parameters": {
                "max_connections": 200,
                # The commit waits until the standby has flushed the WAL (remote_apply would
                # also wait until it is visible to queries there: see deploy/README.md).
                "synchronous_commit": "on",
                "wal_keep_size": "256MB",
                "hot_standby_feedback": "on",
            },
        },
    }


def node_config(
    node: Node, etcd_hosts: list[str], secrets: Secrets, timing: Timing, listen: str = "127.0.0.1"
) -> dict[str, Any]:
    """Patroni's configuration file for ``node``."""
    return {
        "scope": SCOPE,
        "namespace": NAMESPACE,
        "name": node.name,
        "restapi": {
            "listen": f"{listen}:{node.api_port}",
            "connect_address": f"{listen}:{node.api_port}",
        },
        "etcd3": {"hosts": etcd_hosts},
        "bootstrap": {
            "dcs": dynamic(timing),
            # Checksums: pg_rewind (and catching silent corruption) after a failover.
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"{listen}:{node.pg_port}",
            "connect_address": f"{listen}:{node.pg_port}",
            "data_dir": str(node.data_dir),
            "bin_dir": str(PG_BIN),
            "pgpass": str(node.home / "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": secrets.superuser},
                "replication": {"username": "replicator", "password": secrets.replication},
                "rewind": {"username": "rewinder", "password": secrets.rewind},
            },
            "parameters": {"unix_socket_directories": str(node.socket_dir), **_timescale()},
            "pg_hba": [
                # The socket folder is the cluster user's own (0700).
                "local all all trust",
                f"host replication replicator {listen}/32 scram-sha-256",
                f"host all all {listen}/32 scram-sha-256",
            ],
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }


def _timescale() -> dict[str, str]:
    """Preload TimescaleDB where it is installed, so IOC_TIMESCALE=auto can use it."""
    if not has_timescale():
        return {}
    return {"shared_preload_libraries": "timescaledb", "timescaledb.telemetry_level": "off"}


def etcd_command(
    home: Path, client_port: int, peer_port: int, host: str = "127.0.0.1"
) -> list[str]:
    """A single-node etcd serving the v3 API (Patroni's ``etcd3``) on ``host``."""
    client = f"http://{host}:{client_port}"
    peer = f"http://{host}:{peer_port}"
    return [
        "/usr/bin/etcd",
        "--name=ioc-etcd",
        f"--data-dir={home}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=ioc-etcd={peer}",
        "--initial-cluster-state=new",
        "--initial-cluster-token=ioc",
    ]
