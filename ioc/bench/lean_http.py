"""A lean HTTP/1.1 load client for many small POSTs: keep-alive connections on uvloop, one
request in flight on each, answers read by httptools (the parser the server itself uses).

The load generator shares the server's machine, so every microsecond it spends is taken from
the server. aiohttp costs about 400 µs of CPU per small POST on a loaded machine (``ioc bench
clients``); this costs a fraction of it and still does the whole exchange: it sends real
requests, waits for each whole answer, checks its status and decodes its JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import msgspec
import uvloop

from ioc.bench.harness import Posted

_decode = msgspec.json.Decoder(dict[str, Any]).decode


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``exchange`` sends a request and returns (status, body)."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionError("the server closed the connection"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class LeanPool:
    """Keep-alive connections to one server for POSTs to one path; ``post`` borrows a free one
    (waiting when all are busy) and returns (status, decoded JSON answer)."""

    def __init__(self, url: str, key: str, path: str, content_type: str, size: int) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: "
        ).encode()
        self._size = size
        self._free: asyncio.Queue[_Connection] = asyncio.Queue()
        self._all: list[_Connection] = []

    async def __aenter__(self) -> LeanPool:
        loop = asyncio.get_running_loop()
        for _ in range(self._size):
            _, connection = await loop.create_connection(_Connection, *self._address)
            self._all.append(connection)
            self._free.put_nowait(connection)
        return self

    async def __aexit__(self, *_: object) -> None:
        for connection in self._all:
            connection.close()

    async def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        connection = await self._free.get()
        try:
            status, raw = await connection.exchange(
                b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
            )
        finally:
            self._free.put_nowait(connection)
        return status, _decode(raw)


async def _post_all(
    url: str,
    key: str,
    bodies: list[bytes],
    path: str,
    content_type: str,
    parallel: int,
    ok: tuple[int, ...],
) -> Posted:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: "
    ).encode()
    queue = list(reversed(bodies))
    latencies: list[float] = []
    done: list[tuple[float, int, float]] = []
    stored = 0
    loop = asyncio.get_running_loop()
    connections: list[_Connection] = []
    for _ in range(parallel):
        _, connection = await loop.create_connection(_Connection, host, port)
        connections.append(connection)

    async def worker(connection: _Connection) -> None:
        nonlocal stored
        while queue:
            body = queue.pop()
            request = b"%s%d\r\n\r\n%s" % (head, len(body), body)
            sent = time.perf_counter()
            status, raw = await connection.exchange(request)
            answer = _decode(raw)
            if status not in ok or answer.get("rejected"):
                raise RuntimeError(f"refused: {status} {str(answer)[:300]}")
            accepted = int(answer.get("accepted", 1))
            stored += accepted
            finished = time.perf_counter()
            latencies.append(finished - sent)
            done.append((finished - started, accepted, finished - sent))

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    elapsed = time.perf_counter() - started
    return Posted(stored, elapsed, sorted(latencies), done)


def post_all_lean(
    url: str,
    key: str,
    bodies: list[bytes],
    *,
    path: str,
    content_type: str,
    parallel: int,
    ok: tuple[int, ...] = (200, 201),
) -> tuple[Posted, float]:
    """POST every body over ``parallel`` connections on a uvloop loop of its own; any refusal
    stops the run. (what was achieved, this process's CPU seconds spent on it)."""
    clock: Callable[[], float] = time.process_time
    before = clock()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        posted = runner.run(_post_all(url, key, bodies, path, content_type, parallel, ok))
    return posted, clock() - before
