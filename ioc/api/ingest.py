"""Ingest endpoints: one event, a batch (NDJSON or JSON array), and a WebSocket for gateways."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
import psycopg
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from psycopg_pool import PoolTimeout

from ioc.api.body import (
    LARGE_BODY_BYTES,
    favour_the_event_loop,
    hand_back_large_buffers,
    read_body,
    release_memory,
)
from ioc.api.errors import error_body, nested_too_deeply, respond, status_of, to_store_unavailable
from ioc.api.media import report_with_media, report_with_media_body
from ioc.api.security import SocketGuard
from ioc.api.uploads import is_multipart
from ioc.errors import InvalidInput, IocError, UnsupportedMediaType
from ioc.events.intake import BatchResult
from ioc.events.kinds import Event, FieldReport, json_schemas
from ioc.events.validation import BATCH_TYPES, JSON_TYPES, NDJSON_TYPES, decode_one, media_type
from ioc.lookup import code_of_report
from ioc.platform import Platform

log = logging.getLogger(__name__)

# Answers reporting more lines than this are encoded in a worker thread.
_INLINE_LINES = 1000
_JSON = "application/json"

_EVENT_SCHEMA, _ = json_schemas()
_BATCH_RESULT = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {"type": "integer"},
        "duplicate_lines": {"type": "array", "items": {"type": "integer"}},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "line": {"type": "integer"},
                    "field": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def build_ingest_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/events", tags=["ingest"])
    limit = platform.settings.max_body_bytes
    # Large bodies are decoded in worker threads; /healthz and the rest must not wait on them.
    favour_the_event_loop()
    hand_back_large_buffers()

    @router.post(
        "",
        status_code=201,
        summary="Post one event",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _EVENT_SCHEMA},
                    **report_with_media_body(_EVENT_SCHEMA, platform.settings.media_per_report),
                },
            }
        },
        responses={
            200: {"description": "a duplicate: already stored, not stored again"},
            201: {
                "description": "stored; a field report's answer carries lookup_code, the code "
                "the citizen looks it up with (GET /v1/public/lookup)"
            },
            **{code: _ERROR for code in (400, 401, 403, 413, 415, 422, 503)},
        },
    )
    async def post_one(request: Request) -> Response:
        return await answer_one(platform, request)

    @router.post(
        "/batch",
        summary="Post a batch of events",
        description=(
            "NDJSON (one event per line) or a JSON array. Every valid event is stored, in one "
            "transaction; each refused line is reported with its number, field and reason."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    **{t: {"schema": {"type": "string"}} for t in sorted(NDJSON_TYPES)},
                    "application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
                },
            }
        },
        responses={
            200: {
                "description": "what happened",
                "content": {"application/json": {"schema": _BATCH_RESULT}},
            },
            **{code: _ERROR for code in (400, 401, 403, 413, 415, 422, 503)},
        },
    )
    async def post_batch(request: Request) -> Response:
        started = time.perf_counter()
        who = await platform.authenticate(request)
        kind = request.headers.get("content-type")
        if media_type(kind) not in BATCH_TYPES:
            raise UnsupportedMediaType(
                f"content type {media_type(kind) or '(none)'!r} is not accepted for a batch; "
                "use one of: " + ", ".join(BATCH_TYPES)
            )
        body = await read_body(request, limit)
        try:
            result = await platform.intake.batch(body, kind, who)
        finally:
            if len(body) >= LARGE_BODY_BYTES:
                del body
                await asyncio.to_thread(release_memory)
        platform.metrics.observe_ingest("batch", time.perf_counter() - started)
        if result.accepted == 0 and not result.duplicate_lines:
            reason = (
                "no event in the batch was accepted" if result.rejected else "the batch is empty"
            )
            failure = InvalidInput(reason, result.rejected)
            answer = error_body(failure.code, failure.message, failure.details)
            return await _json(answer, status_of(failure), len(result.rejected))
        return await _json(_result(result), 200, len(result.rejected))

    @router.websocket("/ws")
    async def gateway(socket: WebSocket) -> None:
        """Each message is a batch (NDJSON, JSON array or one object); each gets an ack.

        Every failure is answered with an error ack and the socket stays open. A message over
        the body limit is closed by the server (1009, ``server_limits``) before it is read.
        """
        try:
            who = await platform.authenticate(socket)
        except IocError as exc:
            # Accept first so the gateway reads why (a refused handshake carries no reason).
            await socket.accept()
            await socket.close(code=1008, reason=exc.message[:120])
            return
        await socket.accept()
        # Re-checks the key while the socket is open: a revoked key's socket is closed (1008).
        guard = SocketGuard.of(socket, platform.auth)
        seq = 0
        try:
            while True:
                message = await guard.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes") or (message.get("text") or "").encode()
                seq += 1
                ack = await _ack(platform, who, seq, data)
                large = len(data) >= LARGE_BODY_BYTES
                del data, message  # the message may be as large as a body: free it now
                await socket.send_bytes(await _encode(ack, len(ack.get("errors", ()))))
                if large:
                    await asyncio.to_thread(release_memory)
        except WebSocketDisconnect:
            return
        finally:
            guard.stop()

    return router


async def answer_one(platform: Platform, request: Request) -> Response:
    """POST /v1/events: one event (JSON, or a field report with photos as multipart). The
    route calls this, and so does the fast path in front of the router (``ioc.api.fastpath``):
    every rule of the endpoint lives here."""
    started = time.perf_counter()
    who = await platform.authenticate(request)
    answer: dict[str, Any]
    event: Event
    if is_multipart(request):
        event, receipt, photos = await report_with_media(platform, request, who)
        answer = {"status": "accepted" if receipt.stored else "duplicate"}
        if receipt.stored:
            answer["media"] = [m.id for m in photos]
    else:
        if media_type(request.headers.get("content-type")) not in JSON_TYPES:
            raise UnsupportedMediaType(
                "send one event as application/json (a field report with photos: "
                "multipart/form-data)"
            )
        body = await read_body(request, platform.settings.max_body_bytes)
        try:
            event = decode_one(body)
            receipt = await platform.intake.submit(event, who)
        finally:
            if len(body) >= LARGE_BODY_BYTES:
                del body
                await asyncio.to_thread(release_memory)
        answer = {"status": "accepted" if receipt.stored else "duplicate"}
    # The citizen's code for the public lookup (GET /v1/public/lookup, page /lookup): read
    # with the write; a repeat (or a report stored with tickets off) asks for it.
    code = receipt.lookup_code
    source = who.source or getattr(event, "source", None)
    if code is None and isinstance(event, FieldReport) and source is not None:
        async with platform.pool.connection() as conn:
            code = await code_of_report(conn, source, event.external_id)
    if code is not None:
        answer["lookup_code"] = code
    platform.metrics.observe_ingest("one", time.perf_counter() - started)
    # The bytes JSONResponse would send (compact, UTF-8), encoded faster.
    return Response(msgspec.json.encode(answer), 201 if receipt.stored else 200, media_type=_JSON)


def _result(result: BatchResult) -> dict[str, Any]:
    """A batch's answer; its errors stay dataclasses (encoded as objects, no dict per line)."""
    return {
        "accepted": result.accepted,
        "duplicates": len(result.duplicate_lines),
        "rejected": len(result.rejected),
        "duplicate_lines": result.duplicate_lines,
        "errors": result.rejected,
    }


async def _encode(body: dict[str, Any], lines: int) -> bytes:
    """JSON of an answer; one that reports many lines is encoded off the event loop."""
    if lines > _INLINE_LINES:
        return await asyncio.to_thread(_encode_in_slices, body)
    return msgspec.json.encode(body)


_SLOT = "\x00lines"
_SLOT_JSON = msgspec.json.encode(_SLOT)


def _encode_in_slices(body: dict[str, Any]) -> bytes:
    """The answer's JSON, its long list of lines encoded a slice at a time (the encoder holds
    the GIL while it works, and the event loop needs it back now and then)."""
    inner = body.get("error", body)
    key = "details" if "error" in body else "errors"
    lines = inner[key]
    slices = [
        msgspec.json.encode(lines[at : at + _INLINE_LINES])[1:-1]
        for at in range(0, len(lines), _INLINE_LINES)
    ]
    nested = "error" in body
    frame = {**body, "error": {**inner, key: _SLOT}} if nested else {**body, key: _SLOT}
    return msgspec.json.encode(frame).replace(_SLOT_JSON, b"[" + b",".join(slices) + b"]", 1)


async def _json(body: dict[str, Any], status: int, lines: int) -> Response:
    return Response(await _encode(body, lines), status, media_type="application/json")


async def _ack(platform: Platform, who: Any, seq: int, data: bytes) -> dict[str, Any]:
    try:
        return await _ingest(platform, who, seq, data)
    except RecursionError:
        failure = nested_too_deeply()
        return {"seq": seq, "status": 400, **error_body(failure.code, failure.message)}
    except Exception:
        log.exception("websocket ingest failed")
        return {
            "seq": seq,
            "status": 500,
            **error_body("internal_error", "the message failed inside the platform; not stored"),
        }


async def _ingest(platform: Platform, who: Any, seq: int, data: bytes) -> dict[str, Any]:
    limit = platform.settings.max_body_bytes
    if len(data) > limit:
        return {
            "seq": seq,
            "status": 413,
            **error_body(
                "payload_too_large", f"the message is over {limit} bytes, the most accepted"
            ),
        }
    stripped = data.lstrip()
    kind = "application/json" if stripped.startswith(b"[") else "application/x-ndjson"
    try:
        result = await platform.intake.batch(data, kind, who)
    except IocError as exc:
        return {
            "seq": seq,
            "status": status_of(exc),
            **error_body(exc.code, exc.message, exc.details),
        }
    except (psycopg.OperationalError, PoolTimeout) as exc:
        failure = to_store_unavailable(exc)
        body = respond(failure)
        log.warning("websocket ingest: %s", exc)
        return {
            "seq": seq,
            "status": body.status_code,
            "retry_after": failure.retry_after_s,
            **error_body(failure.code, failure.message),
        }
    nothing = result.accepted == 0 and not result.duplicate_lines
    return {"seq": seq, "status": 422 if nothing else 200, **_result(result)}
