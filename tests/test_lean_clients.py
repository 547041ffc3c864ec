"""The benchmarks' lean clients: the websocket listener (``ioc.bench.lean_ws``) against the
running app and against a peer that sends every kind of frame in small pieces, and the lean
HTTP pool (``ioc.bench.lean_http.LeanPool``) posting to the running app."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from typing import Any

import msgspec

from ioc.bench.lean_http import LeanPool
from ioc.bench.lean_ws import connect_lean
from ioc.tickets.opening import CHANNEL as TICKETS
from tests.conftest import RunningServer, make_key
from tests.test_live_batch import announce

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_the_lean_listener_hears_the_ticket_feed_and_closes_cleanly(
    server: RunningServer,
) -> None:
    operator = make_key(server, "operator")

    async def scenario() -> tuple[list[Any], tuple[int, str]]:
        heard: list[Any] = []
        got = asyncio.Event()

        def on_text(text: bytes) -> None:
            heard.extend(json.loads(text))
            got.set()

        socket = await connect_lean(
            f"{server.ws_url}/v1/tickets/ws?batch=1&api_key={operator}", on_text
        )
        for _ in range(200):  # until the server has subscribed it
            await asyncio.to_thread(
                announce, server.db_url, [(TICKETS, {"ticket": 1, "agency": "ioc"})]
            )
            try:
                await asyncio.wait_for(got.wait(), 0.5)
                break
            except TimeoutError:
                continue
        socket.close()
        return heard, await asyncio.wait_for(socket.closed, 10)

    heard, closed = asyncio.run(scenario())
    assert heard and all(m["ticket"] == 1 and isinstance(m["seq"], int) for m in heard)
    assert closed == (1000, "")


def test_the_lean_listener_reports_the_servers_close_code(server: RunningServer) -> None:
    operator = make_key(server, "operator")

    async def scenario() -> tuple[int, str]:
        socket = await connect_lean(
            f"{server.ws_url}/v1/tickets/ws?batch=yes&api_key={operator}", lambda _: None
        )
        return await asyncio.wait_for(socket.closed, 10)

    code, reason = asyncio.run(scenario())
    assert code == 1008 and "batch" in reason


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    if len(payload) < 65536:
        return head + bytes([126]) + struct.pack("!H", len(payload)) + payload
    return head + bytes([127]) + struct.pack("!Q", len(payload)) + payload


async def _client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    assert second & 0x80, "a client frame must be masked"
    mask = await reader.readexactly(4)
    body = await reader.readexactly(second & 0x7F)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(body))


def test_the_lean_listener_reads_every_frame_shape_in_pieces_and_answers_pings() -> None:
    long_text = json.dumps([{"ticket": n} for n in range(9000)]).encode()  # over 65,535 bytes
    medium = json.dumps([{"ticket": n} for n in range(30)]).encode()  # 126..65,535 bytes
    assert len(long_text) > 65535 and 125 < len(medium) < 65536

    async def scenario() -> tuple[list[bytes], list[tuple[int, bytes]], tuple[int, str]]:
        answers: list[tuple[int, bytes]] = []

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
            stream = (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
            stream += _frame(0x1, b'[{"ticket":1}]')
            stream += _frame(0x1, medium)
            stream += _frame(0x1, b'[{"tic', fin=False) + _frame(0x9, b"are you there")
            stream += _frame(0x0, b'ket":2}]')
            stream += _frame(0x1, long_text)
            stream += _frame(0x8, struct.pack("!H", 1001) + "đi nhé".encode())
            for start in range(0, len(stream), 7):  # in pieces of 7 bytes
                writer.write(stream[start : start + 7])
                await writer.drain()
            answers.append(await _client_frame(reader))  # the pong
            answers.append(await _client_frame(reader))  # the close answered
            writer.close()

        listening = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        texts: list[bytes] = []
        socket = await connect_lean(f"ws://127.0.0.1:{port}/feed", texts.append)
        closed = await asyncio.wait_for(socket.closed, 10)
        await asyncio.sleep(0.1)
        listening.close()
        return texts, answers, closed

    texts, answers, closed = asyncio.run(scenario())
    assert texts == [b'[{"ticket":1}]', medium, b'[{"ticket":2}]', long_text]
    assert answers == [(0xA, b"are you there"), (0x8, struct.pack("!H", 1001))]
    assert closed == (1001, "đi nhé")


def test_the_lean_pool_posts_and_reads_each_answer(server: RunningServer) -> None:
    source = make_key(server, "source", source="lean")
    encode = msgspec.json.encode

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        async with LeanPool(server.url, source, "/v1/events", "application/json", 4) as pool:
            good = {
                "kind": "field_report",
                "external_id": "LEAN",
                "category": "moi_truong",
                "description": "Rác thải",
                "lon": 107.58,
                "lat": 16.46,
                "occurred_at": "2026-11-30T08:00:00+07:00",
            }
            bad = {**good, "lat": 123.0}
            return await asyncio.gather(
                *(
                    pool.post(encode(good | {"external_id": f"LEAN-{n}", "lon": 107.58 + n / 1000}))
                    for n in range(8)
                ),
                pool.post(encode(bad)),
            )

    answers = asyncio.run(scenario())
    assert [status for status, _ in answers[:8]] == [201] * 8
    assert answers[8][0] == 422 and "lat" in json.dumps(answers[8][1])
