"""Live frames written to the transport (``ioc.api.wire``): the bytes are the frames the
WebSocket library builds, and a real uvicorn server delivers them to a real client whole and
in order, through its transport with the default protocol and through the ASGI send with a
protocol the shortcut does not know."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket
from websockets.frames import Frame, Opcode

from ioc.api.wire import WireCapture, frame_sender, text_frame
from ioc.bench.harness import free_port

# Sizes around each length encoding (7 bits, 16 bits, 64 bits), with Vietnamese text.
_SIZES = (0, 1, 125, 126, 127, 1000, 65535, 65536, 70000)


def _text(size: int) -> str:
    """A text of exactly ``size`` bytes in UTF-8, mixing one- and three-byte characters."""
    unit = "Phường Bến Nghé "
    whole = (unit * (size // len(unit) + 1)).encode()[:size].decode(errors="ignore")
    return whole + "x" * (size - len(whole.encode()))


@pytest.mark.parametrize("size", _SIZES)
def test_a_text_frame_is_the_frame_the_websocket_library_builds(size: int) -> None:
    text = _text(size)
    assert len(text.encode()) == size
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert text_frame(text) == expected


def _app(seen: dict[str, Any], texts: list[str], capture: bool) -> FastAPI:
    app = FastAPI()

    @app.websocket("/feed")
    async def feed(socket: WebSocket) -> None:
        await socket.accept()
        seen["direct"] = "ioc.wire" in socket.scope
        send = frame_sender(socket)
        for text in texts:
            await send(text)
        await socket.close(code=1000)
        # Once closed, a frame goes the ASGI way, which refuses it as it always did.
        try:
            await send("after the close")
        except Exception as exc:  # whatever the server raises is its answer
            seen["after_close"] = type(exc).__name__

    if capture:
        app.add_middleware(WireCapture)
    return app


@contextmanager
def _serving(app: FastAPI) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "the test server did not start"
        yield f"ws://127.0.0.1:{port}/feed"
    finally:
        server.should_exit = True
        thread.join(10)


async def _receive_all(url: str) -> tuple[list[str], int | None]:
    received: list[str] = []
    async with websockets.connect(url, max_size=None) as client:
        try:
            while True:
                message = await client.recv()
                assert isinstance(message, str)
                received.append(message)
        except websockets.ConnectionClosedOK as closed:
            return received, closed.rcvd.code if closed.rcvd else None


@pytest.mark.parametrize("capture", [True, False], ids=["to the transport", "the ASGI send"])
def test_frames_reach_a_real_client_whole_and_in_order(capture: bool) -> None:
    """With the capture, frames go to the server's transport (its default protocol); without
    it, ``frame_sender`` is the ASGI send. The client receives the same either way."""
    texts = [_text(size) for size in _SIZES] + ['{"seq":1,"name":"Thừa Thiên Huế"}']
    seen: dict[str, Any] = {}
    with _serving(_app(seen, texts, capture)) as url:
        received, code = asyncio.run(_receive_all(url))
    assert received == texts
    assert code == 1000
    assert seen["direct"] is capture
    assert "after_close" in seen  # a frame after the close is refused, not written
