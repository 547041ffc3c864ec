"""Live feeds over WebSocket: authenticate, subscribe to the hub, stream until either side ends.

A client that reconnects sends ``?after=<seq>``, the last ``seq`` it received (from any server
process): it is sent what it missed from the live log first, then the live notices after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fastapi import WebSocket, WebSocketDisconnect

from ioc.api.security import SocketGuard
from ioc.auth import Principal
from ioc.errors import IocError
from ioc.live import RESYNC, Accept, Subscription
from ioc.platform import Platform
from ioc.store import livelog


async def serve_feed(
    socket: WebSocket, platform: Platform, make_filter: Callable[[Principal], Accept]
) -> None:
    """One client's feed: the hub's messages its filter accepts (refused with a reason)."""
    try:
        who = await platform.authenticate(socket)
        accept = make_filter(who)
        after = livelog.parse_after(socket.query_params.get("after"))
    except IocError as exc:
        # Accept first so the client reads why (a refused handshake carries no reason).
        await socket.accept()
        await socket.close(code=1008, reason=exc.message[:120])
        return
    # Subscribe before the handshake completes: a client that is connected hears everything.
    subscription = platform.hub.subscribe(accept)
    try:
        await socket.accept()
        if after is not None:
            await catch_up(socket, platform, subscription, after)
        await stream(socket, subscription, SocketGuard.of(socket, platform.auth))
    finally:
        subscription.close()


async def catch_up(
    socket: WebSocket, platform: Platform, subscription: Subscription, after: int
) -> None:
    """Send what the client missed after ``after`` (or a resync when it is no longer kept)."""
    async with platform.pool.connection() as conn:
        missed = await livelog.replay(conn, after, subscription.accept)
    if missed.resync:
        await socket.send_text(RESYNC)
        return
    subscription.floor = missed.upto
    for _, text, _ in missed.messages:
        await socket.send_text(text)


async def stream(socket: WebSocket, subscription: Subscription, guard: SocketGuard) -> None:
    """Send a subscription's messages until the client leaves, the feed ends, or the client's
    key or login ends (the guard closes the socket then)."""

    async def send() -> None:
        async for text in subscription:
            await socket.send_text(text)

    async def drain() -> None:
        # Clients only listen; reading is how a closed connection is noticed.
        while (await guard.receive())["type"] != "websocket.disconnect":
            pass

    sender = asyncio.create_task(send())
    reader = asyncio.create_task(drain())
    try:
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, reader):
            task.cancel()
        # A send or receive that failed means the client went away: nothing to report.
        await asyncio.gather(sender, reader, return_exceptions=True)
        guard.stop()
    if sender in done and sender.exception() is None:
        # The feed ended: the client fell too far behind, or the server is stopping.
        reason = "too slow: reconnect and reload" if subscription.dropped else "server stopping"
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await socket.close(code=1013 if subscription.dropped else 1012, reason=reason)
