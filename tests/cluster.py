"""Test helpers: several real `ioc serve` processes on one database, and feed clients that
reconnect to another process with their resume cursor when theirs goes away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from ioc.store.keys import create_key
from tests.conftest import auth, free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Process:
    """One `ioc serve` subprocess."""

    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9: no shutdown, no goodbye to the database or the clients."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def spawn(db_url: str, data_dir: Path, name: str, *args: str, **env: str) -> Process:
    """Start `ioc serve` (with ``args``) on a free port, without waiting for it."""
    port = free_port()
    log = data_dir / f"{name}.log"
    environment = {
        **os.environ,
        "IOC_DATABASE_URL": db_url,
        "IOC_DATA_DIR": str(data_dir),
        "IOC_KEY_CACHE_S": "0",
        "IOC_AGGREGATE_REFRESH_S": "3600",
        **env,
    }
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "serve", "--port", str(port), *args],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Process(port, popen, log)


def wait_ready(process: Process, name: str) -> Process:
    """Returns once the process's /readyz answers 200."""
    deadline = time.monotonic() + 120
    while True:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{name} exited: {process.log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{process.url}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{name} did not become ready: {process.log.read_text()[-2000:]}")
        time.sleep(0.1)


def start(db_url: str, data_dir: Path, name: str, *args: str, **env: str) -> Process:
    """Start `ioc serve` (with ``args``) on a free port; returns once /readyz answers 200."""
    return wait_ready(spawn(db_url, data_dir, name, *args, **env), name)


@contextmanager
def cluster(db_url: str, data_dir: Path, count: int, **env: str) -> Iterator[list[Process]]:
    """``count`` processes, started side by side; each has answered /readyz on entry."""
    processes: list[Process] = []
    try:
        for n in range(count):
            processes.append(spawn(db_url, data_dir, f"serve-{n}", **env))
        for n, process in enumerate(processes):
            wait_ready(process, f"serve-{n}")
        yield processes
    finally:
        for process in processes:  # all told to stop first, then each waited for
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.popen.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def key(db_url: str, role: str, source: str | None = None, agency: str | None = None) -> str:
    async def create() -> str:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            made, _ = await create_key(conn, role, source, agency, f"test {role}")
            return made.token

    return asyncio.run(create())


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


@dataclass
class FeedClient:
    """A live-feed client on a thread: it keeps the last ``seq`` it received and, when its
    connection drops, connects to the next process of its list with ``?after=<seq>``."""

    urls: list[str]  # ws base URLs, its own process first
    path: str
    key: str
    wall: bool = False
    gate: threading.Event = field(default_factory=threading.Event)  # set: may reconnect
    seen: list[Any] = field(default_factory=list)  # ticket ids (or alert ids), as received
    seqs: list[int] = field(default_factory=list)
    resyncs: int = 0
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    after: int = 0
    _socket: ClientConnection | None = None
    _stopping: bool = False
    _thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._socket is not None

    def _run(self) -> None:
        index = 0
        while not self._stopping:
            self.gate.wait()
            url = f"{self.urls[index % len(self.urls)]}{self.path}?after={self.after}"
            try:
                with connect(url, additional_headers=auth(self.key), open_timeout=10) as socket:
                    self._socket = socket
                    self.connections += 1
                    for text in socket:
                        self._take(json.loads(text))
            except (ConnectionClosed, OSError, InvalidStatus, TimeoutError):
                pass  # the process went away (or is not there): try the next
            except Exception as exc:  # reported by the test, not lost on this thread
                self.errors.append(repr(exc))
            self._socket = None
            index += 1  # that process is gone (or refused): try the next one

    def _take(self, message: dict[str, Any]) -> None:
        with self.lock:
            if message.get("resync") or message.get("type") == "resync":
                self.resyncs += 1
            elif self.wall and message.get("type") == "tickets":
                self.seen.extend(row[0] for row in message["tickets"])
            elif self.wall and message.get("type") == "alerts":
                self.seen.extend(("alert", a["id"]) for a in message["alerts"])
            elif "ticket" in message:
                self.seen.append(message["ticket"])
            elif "alerts" in message:  # a batch of alert notices
                self.seen.extend(a["alert"] for a in message["alerts"])
            elif "alert" in message:
                self.seen.append(message["alert"])
            if isinstance(message.get("seq"), int):
                self.seqs.append(message["seq"])
                self.after = message["seq"]

    def received(self) -> list[Any]:
        with self.lock:
            return list(self.seen)

    def stop(self) -> None:
        self._stopping = True
        self.gate.set()
        socket = self._socket
        if socket is not None:
            socket.close()
        if self._thread is not None:
            self._thread.join(30)
