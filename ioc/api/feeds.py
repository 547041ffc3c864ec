"""Live feeds over WebSocket: authenticate, subscribe to the hub, stream until either side ends.

A client that reconnects sends ``?after=<seq>``, the last ``seq`` it received (from any server
process): it is sent what it missed from the live log first, then the live notices after it.

A client that sends ``?batch=1`` gets frames that are each a JSON array of one or more
messages in order (everything queued for it when its sender wakes, replays too); other clients
get one message per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from fastapi import WebSocket, WebSocketDisconnect

from ioc.api.security import SocketGuard
from ioc.api.wire import frame_sender
from ioc.auth import Principal
from ioc.errors import InvalidInput, IocError
from ioc.frames import array_frames
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
        batched = wants_batches(socket.query_params.get("batch"))
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
            await catch_up(socket, platform, subscription, after, batched)
        await stream(socket, subscription, SocketGuard.of(socket, platform.auth), batched)
    finally:
        subscription.close()


def wants_batches(text: str | None) -> bool:
    """The ``batch`` parameter of a live feed: 1 for array frames, 0 (or none) for one message
    per frame."""
    if text is None or text == "0":
        return False
    if text == "1":
        return True
    reason = "must be 1 (frames are arrays of messages) or 0 (one message per frame)"
    raise InvalidInput(f"batch: {reason}", [{"field": "batch", "reason": reason}])


async def send_all(socket: WebSocket, texts: Sequence[str], batched: bool) -> None:
    """Send messages: one frame each, or (batched) as array frames (``ioc.frames``)."""
    send_text = frame_sender(socket)
    for text in array_frames(texts) if batched else texts:
        await send_text(text)


async def catch_up(
    socket: WebSocket, platform: Platform, subscription: Subscription, after: int, batched: bool
) -> None:
    """Send what the client missed after ``after`` (or a resync when it is no longer kept)."""
    async with platform.pool.connection() as conn:
        missed = await livelog.replay(conn, after, subscription.accept)
    if missed.resync:
        await send_all(socket, [RESYNC], batched)
        return
    subscription.floor = missed.upto
    await send_all(socket, [text for _, text, _ in missed.messages], batched)


async def stream(
    socket: WebSocket, subscription: Subscription, guard: SocketGuard, batched: bool
) -> None:
    """Send a subscription's messages until the client leaves, the feed ends, or the client's
    key or login ends (the guard closes the socket then)."""

    send_text = frame_sender(socket)  # each frame's bytes built once, for every subscriber

    async def send() -> None:
        if not batched:
            async for text in subscription:
                await send_text(text)
            return
        async for frames in subscription.frames():  # built once for its filter's subscribers
            for frame in frames:
                await send_text(frame)

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
