"""A two-node PostgreSQL 15 cluster under Patroni with a one-node etcd, all on this machine.

For trying the HA layout and for the failover test and benchmark: everything lives under one
folder, every port is on 127.0.0.1. Run as root, it installs Debian's packages when missing
and runs etcd, Patroni and PostgreSQL as the ``postgres`` user (Patroni refuses root).

    python -m ioc.ha.cluster start DIR     # prints the platform's IOC_DATABASE_URL
    python -m ioc.ha.cluster status DIR
    python -m ioc.ha.cluster stop DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from ioc.ha.config import FAST, SHIPPED, Node, Secrets, Timing, etcd_command, node_config
from ioc.ha.packages import ensure_packages

HOST = "127.0.0.1"
APP_USER = "ioc"
APP_DB = "ioc"
RUN_AS = "postgres"  # as root: the user etcd, Patroni and PostgreSQL run as


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Layout:
    """What ``start`` chose (kept in DIR/cluster.json, readable only by its owner)."""

    etcd_client: int
    etcd_peer: int
    pg_ports: list[int]
    api_ports: list[int]
    superuser: str
    replication: str
    rewind: str
    app: str
    timing: dict[str, int]

    @classmethod
    def fresh(cls, timing: Timing, nodes: int = 2) -> Layout:
        token = secrets.token_urlsafe
        return cls(
            _free_port(),
            _free_port(),
            [_free_port() for _ in range(nodes)],
            [_free_port() for _ in range(nodes)],
            token(18),
            token(18),
            token(18),
            token(18),
            asdict(timing),
        )


class LocalCluster:
    """The cluster under ``home``; ``start`` makes or resumes it, ``stop`` ends every process."""

    def __init__(self, home: Path, timing: Timing = SHIPPED) -> None:
        self.home = home.resolve()
        self._timing = timing
        self._layout: Layout | None = None
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- what clients use -------------------------------------------------------------------

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            self._layout = Layout(**json.loads((self.home / "cluster.json").read_text()))
        return self._layout

    @property
    def nodes(self) -> list[Node]:
        lay = self.layout
        return [
            Node(f"node{n + 1}", pg, api, self.home / f"node{n + 1}")
            for n, (pg, api) in enumerate(zip(lay.pg_ports, lay.api_ports, strict=True))
        ]

    def url(self, session: str = "read-write", user: str = APP_USER, db: str = APP_DB) -> str:
        """A multi-host URL: libpq tries each node and keeps the first that fits ``session``."""
        password = self.layout.app if user == APP_USER else self.layout.superuser
        hosts = ",".join(f"{HOST}:{port}" for port in self.layout.pg_ports)
        return (
            f"postgresql://{user}:{quote(password, safe='')}@{hosts}/{db}"
            f"?target_session_attrs={session}&connect_timeout=2"
        )

    @property
    def admin_url(self) -> str:
        return self.url(user="postgres", db="postgres")

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the cluster (name, role, state, lag), from any node that answers."""
        for node in self.nodes:
            try:
                with urllib.request.urlopen(
                    f"http://{HOST}:{node.api_port}/cluster", timeout=2
                ) as answer:
                    members: list[dict[str, Any]] = json.load(answer).get("members", [])
                    return members
            except (urllib.error.URLError, OSError, ValueError):
                continue
        return []

    def leader(self) -> Node | None:
        names = {m["name"] for m in self.members() if m.get("role") == "leader"}
        return next((n for n in self.nodes if n.name in names), None)

    def healthy(self) -> bool:
        """A running leader and a synchronous standby."""
        roles = {
            m.get("role") for m in self.members() if m.get("state") in ("running", "streaming")
        }
        return {"leader", "sync_standby"} <= roles

    def postmaster_pid(self, node: Node) -> int:
        return int((node.data_dir / "postmaster.pid").read_text().split()[0])

    def kill_primary(self) -> Node:
        """kill -9 the leader's postmaster; the node that was leader."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError("the cluster has no leader to kill")
        os.kill(self.postmaster_pid(leader), signal.SIGKILL)
        return leader

    # -- running it -------------------------------------------------------------------------

    def start(self, within_s: float = 180.0) -> str:
        """Start etcd and both nodes (bootstrapping on first use); the platform's URL."""
        ensure_packages()
        self._prepare_home()
        env = {**os.environ, "HOME": str(self.home), "PATH": "/usr/bin:/bin"}
        env.pop("PGPASSWORD", None)
        etcd_dir = self.home / "etcd"
        self._spawn(
            "etcd",
            etcd_command(etcd_dir / "data", self.layout.etcd_client, self.layout.etcd_peer),
            env,
        )
        hosts = [f"{HOST}:{self.layout.etcd_client}"]
        lay = self.layout
        for node in self.nodes:
            config = node_config(
                node, hosts, Secrets(lay.superuser, lay.replication, lay.rewind), self._timing
            )
            path = node.home / "patroni.yml"
            path.write_text(json.dumps(config, indent=2))
            path.chmod(0o600)
            self._own(path)
            self._spawn(node.name, ["/usr/bin/patroni", str(path)], env)
        self._wait(self.healthy, within_s, "a leader and a synchronous standby")
        self._create_app_database()
        return self.url()

    def stop(self, within_s: float = 60.0) -> None:
        """Stop both nodes (Patroni stops its PostgreSQL), then etcd."""
        names = [n.name for n in self.nodes] + ["etcd"]
        for name in names:
            self._signal(name, signal.SIGTERM)
            deadline = time.monotonic() + within_s
            while self._alive(name) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._alive(name):
                self._signal(name, signal.SIGKILL)
            if (child := self._children.pop(name, None)) is not None:
                child.wait()
            (self.home / f"{name}.pid").unlink(missing_ok=True)
        # A postgres whose Patroni was killed outright would outlive it.
        for node in self.nodes:
            with contextlib.suppress(OSError, ValueError):
                os.kill(self.postmaster_pid(node), signal.SIGQUIT)

    def wait_healthy(self, within_s: float) -> None:
        self._wait(self.healthy, within_s, "a leader and a synchronous standby")

    def _prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        state = self.home / "cluster.json"
        if not state.exists():
            state.write_text(json.dumps(asdict(Layout.fresh(self._timing))))
            state.chmod(0o600)
        self._layout = None
        for directory in [self.home / "etcd"] + [n.home for n in self.nodes]:
            directory.mkdir(exist_ok=True)
        for node in self.nodes:
            node.socket_dir.mkdir(exist_ok=True)
            node.socket_dir.chmod(0o700)
        if os.geteuid() == 0:
            self._check_reachable()
            # The folders only: what the servers write inside them is theirs already.
            folders = [self.home, self.home / "etcd"]
            for node in self.nodes:
                folders += [node.home, node.socket_dir]
            for path in folders:
                self._own(path)

    def _check_reachable(self) -> None:
        for parent in self.home.parents:
            if not parent.stat().st_mode & 0o001:
                raise RuntimeError(
                    f"{parent} is closed to other users (mode {parent.stat().st_mode & 0o777:o}):"
                    f" the {RUN_AS} user could not reach {self.home}; choose another folder"
                )

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        if self._alive(name):
            return
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        user = RUN_AS if os.geteuid() == 0 else None
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.home,
            user=user,
            group=user,
            start_new_session=True,  # outlives `start` when run from the command line
        )
        log.close()
        self._children[name] = process
        (self.home / f"{name}.pid").write_text(str(process.pid))

    def _pid(self, name: str) -> int | None:
        try:
            return int((self.home / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def _alive(self, name: str) -> bool:
        if (child := self._children.get(name)) is not None:
            return child.poll() is None
        pid = self._pid(name)
        if pid is None:
            return False
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def _signal(self, name: str, signum: int) -> None:
        pid = self._pid(name)
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    def _wait(self, done: Any, within_s: float, what: str) -> None:
        deadline = time.monotonic() + within_s
        while not done():
            for name in [n.name for n in self.nodes] + ["etcd"]:
                if not self._alive(name):
                    raise RuntimeError(
                        f"{name} exited while waiting for {what}; see {self.home / name}.log"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no {what} within {within_s:.0f} s (members: {self.members()}); "
                    f"logs in {self.home}"
                )
            time.sleep(0.5)

    def _create_app_database(self) -> None:
        """The platform's own role and database (not the superuser: see deploy/README.md)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            role = sql.Identifier(APP_USER)
            if not conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_USER,)
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        role, sql.Literal(self.layout.app)
                    )
                )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (APP_DB,)
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(APP_DB), role)
                )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ioc.ha.cluster", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop", "status", "url"])
    parser.add_argument("home", type=Path, help="the folder the cluster keeps everything in")
    parser.add_argument(
        "--fast", action="store_true", help="test timing: ttl 20, loop_wait 1, retry_timeout 3"
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.home, FAST if args.fast else SHIPPED)
    if args.action == "start":
        url = cluster.start()
        print(f"IOC_DATABASE_URL={url}")
        print(f"IOC_READ_DATABASE_URL={cluster.url('prefer-standby')}")
    elif args.action == "stop":
        cluster.stop()
    elif args.action == "url":
        print(cluster.url())
    else:
        for member in cluster.members():
            print(
                f"{member.get('name')}: {member.get('role')} {member.get('state')}"
                f" port {member.get('port')} lag {member.get('lag', 0)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
