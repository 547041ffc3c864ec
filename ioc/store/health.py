"""What the platform knows of its database while it runs.

The gate is shut while the database is known to be unreachable, so requests get their 503 at
once instead of waiting out the pool's timeout. The watch shuts it on evidence (a connection
broke, the pool timed out or gave up reconnecting, the embedded postmaster is gone), starts the
embedded server again when that is what died, and opens the gate as soon as the pool can hand
out a working connection again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout

if TYPE_CHECKING:
    from ioc.store.database import GatedPool

log = logging.getLogger(__name__)


class DatabaseDown(PoolTimeout):
    """The database is known to be unreachable: refused without waiting for a connection."""


class DatabaseGate:
    """Open while the database is believed reachable; anyone may raise a suspicion."""

    def __init__(self) -> None:
        self._down_reason: str | None = None
        self._down_at = 0.0
        self._suspicion = asyncio.Event()
        self._on_down: list[Callable[[], None]] = []

    @property
    def up(self) -> bool:
        return self._down_reason is None

    def refusal(self) -> DatabaseDown:
        return DatabaseDown(f"the database is unreachable ({self._down_reason})")

    def on_down(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time the gate shuts."""
        self._on_down.append(callback)

    def shut(self, reason: str) -> None:
        if self._down_reason is None:
            self._down_at = time.monotonic()
            log.warning("database unavailable: %s; refusing requests until it is back", reason)
            self._down_reason = reason
            for callback in self._on_down:
                callback()
        self._down_reason = reason

    def open(self) -> None:
        if self._down_reason is not None:
            log.warning("database available again after %.1f s", time.monotonic() - self._down_at)
        self._down_reason = None

    def suspect(self) -> None:
        """Something failed as if the database were gone: have the watch look now."""
        self._suspicion.set()

    async def suspicion(self, within_s: float) -> bool:
        """Wait up to ``within_s`` seconds for a suspicion; whether one came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._suspicion.wait()
        raised = self._suspicion.is_set()
        self._suspicion.clear()
        return raised


class Supervised(Protocol):
    """A database server this process may start again (the embedded one)."""

    def alive(self) -> bool: ...

    def restart(self) -> str: ...


class DatabaseWatch:
    """Keeps the gate true to the database, and the embedded server running."""

    def __init__(
        self,
        pool: GatedPool,
        server: Supervised | None = None,
        idle_s: float = 1.0,
        poll_s: float = 0.25,
        probe_timeout_s: float = 3.0,
    ) -> None:
        self.pool = pool
        self.gate = pool.gate
        self.server = server
        self.idle_s = idle_s
        self.poll_s = poll_s
        self.probe_timeout_s = probe_timeout_s

    async def run(self) -> None:
        suspected = False
        while True:
            try:
                await self.check(suspected)
            except Exception:
                log.exception("database watch: the check failed; trying again")
            if self.gate.up:
                suspected = await self.gate.suspicion(self.idle_s)
            else:
                await asyncio.sleep(self.poll_s)

    async def check(self, suspected: bool = True) -> None:
        """One look: restart a dead embedded server, then shut or open the gate."""
        if self.server is not None and not await asyncio.to_thread(self.server.alive):
            self.gate.shut("the embedded PostgreSQL server is not running")
            log.warning("the embedded PostgreSQL server is gone; starting it again")
            try:
                await asyncio.to_thread(self.server.restart)
            except Exception as exc:
                log.error("starting the embedded PostgreSQL server failed (%s); will retry", exc)
                return
            log.warning("the embedded PostgreSQL server was started again")
        if self.gate.up and not suspected:
            return
        problem = await probe(self.pool.url, self.probe_timeout_s)
        if problem is not None:
            self.gate.shut(problem)
        elif not self.gate.up:
            await self._reopen()
        else:
            # Up, yet something broke: a quick restart leaves dead connections in the pool.
            await self.pool.check()

    async def _reopen(self) -> None:
        """The server is back: drop the pool's dead connections, then open the gate once the
        pool hands out a working one."""
        await self.pool.check()
        try:
            await self.pool.try_connection(self.probe_timeout_s)
        except psycopg.Error as exc:
            log.info("database accepts connections, the pool not yet (%s)", exc)
            return
        self.gate.open()


async def probe(url: str, timeout_s: float = 3.0) -> str | None:
    """Connect afresh: None if the server accepts connections, else what went wrong.

    A multi-host URL (an HA cluster) may try each host in turn before one accepts writes, so
    the wait is ``timeout_s`` per host: a dead first host must not hide a live second one.
    """
    hosts = str(conninfo_to_dict(url).get("host") or "").count(",") + 1
    try:
        async with asyncio.timeout(timeout_s * hosts):
            conn = await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=max(2, int(timeout_s))
            )
            async with conn:
                await conn.execute("SELECT 1")
    except (psycopg.Error, OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {str(exc).strip() or 'no answer'}"
    return None


async def wait_for_database(url: str, within_s: float, every_s: float = 0.5) -> None:
    """Return once the server accepts connections; give up after ``within_s`` seconds.

    A process starting while its database is briefly away (restarting, or a worker replaced
    during an outage) waits for it rather than failing its start-up.
    """
    deadline = time.monotonic() + within_s
    waiting = False
    while (problem := await probe(url)) is not None:
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"the database did not accept connections within {within_s:.0f} s ({problem})"
            )
        if not waiting:
            log.warning("waiting for the database to accept connections (%s)", problem)
            waiting = True
        await asyncio.sleep(every_s)
    if waiting:
        log.warning("the database accepts connections")
