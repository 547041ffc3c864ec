"""Ticket endpoints: the queue, one ticket, its history, actions, and the live feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response

from ioc import queue
from ioc.api.body import read_limited
from ioc.errors import IocError
from ioc.live import Subscription
from ioc.platform import Platform
from ioc.tickets import MOVES

log = logging.getLogger(__name__)

_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_TicketId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the ticket's id")]
_ACTION_SCHEMA = {
    "type": "object",
    "required": ["action"],
    "additionalProperties": False,
    "properties": {
        "action": {"type": "string", "enum": list(MOVES)},
        "assignee": {"type": "string", "description": "who works it (assign)"},
        "reason": {"type": "string", "description": "required by wait, reopen, transfer, reject"},
        "to_agency": {"type": "string", "description": "the agency code (transfer)"},
    },
}


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


def build_tickets_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/tickets", tags=["tickets"])

    @router.get(
        "",
        summary="The ticket queue, most urgent deadline first (cursor pagination)",
        responses={
            200: {"description": '{"tickets": [...], "next": cursor or null}'},
            **{code: _ERROR for code in (401, 403, 422, 503)},
        },
    )
    async def list_tickets(
        request: Request,
        state: Annotated[list[str], Query(description="repeatable: new, assigned, …")] = [],  # noqa: B006
        overdue: Annotated[
            str | None, Query(description="true: open and past the deadline; false: not")
        ] = None,
        category: Annotated[list[str], Query(description="repeatable category code")] = [],  # noqa: B006
        bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
        since: Annotated[
            str | None, Query(description="opened at or after (ISO 8601; no offset: local)")
        ] = None,
        until: Annotated[str | None, Query(description="opened before (ISO 8601)")] = None,
        agency: Annotated[
            str | None, Query(description="agency code (not for agency keys)")
        ] = None,
        cursor: Annotated[str | None, Query(description="`next` of the previous page")] = None,
        limit: Annotated[str | None, Query(description=f"1–{queue.MAX_LIMIT}, default 100")] = None,
    ) -> Response:
        # The parameters above document the API; parsing them (with the messages) is the
        # domain's, so they arrive as the raw strings the client sent.
        who = await platform.authenticate(request)
        params = request.query_params
        filters = queue.parse_filters(
            {name: params.getlist(name) for name in params},
            platform.settings.zone,
            platform.reference.categories(),
        )
        async with platform.pool.connection() as conn:
            page = await queue.list_tickets(conn, who, filters, platform.clock.now())
        return _json(page)

    @router.get(
        "/{ticket_id}",
        summary="One ticket (never the reporter's contact)",
        responses={code: _ERROR for code in (401, 403, 404, 422, 503)},
    )
    async def get_ticket(request: Request, ticket_id: _TicketId) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await queue.get_ticket(conn, who, ticket_id, platform.clock.now()))

    @router.get(
        "/{ticket_id}/history",
        summary="The ticket's append-only history, oldest first",
        responses={code: _ERROR for code in (401, 403, 404, 422, 503)},
    )
    async def get_history(request: Request, ticket_id: _TicketId) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await queue.history(conn, who, ticket_id))

    @router.post(
        "/{ticket_id}/actions",
        summary="Move a ticket: " + ", ".join(MOVES),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ACTION_SCHEMA}},
            }
        },
        responses={
            200: {"description": "the updated ticket"},
            **{code: _ERROR for code in (400, 401, 403, 404, 409, 413, 422, 503)},
        },
    )
    async def post_action(request: Request, ticket_id: _TicketId) -> Response:
        who = await platform.authenticate(request)
        who.require(queue.ACTORS)
        action = queue.decode_action(await read_limited(request, platform.settings.max_body_bytes))
        async with platform.pool.connection() as conn:
            ticket = await queue.act(
                conn, who, ticket_id, action, platform.clock.now(), platform.book
            )
        return _json(ticket)

    @router.websocket("/ws")
    async def live(socket: WebSocket) -> None:
        """New and changed tickets as JSON messages; an agency key hears only its own."""
        try:
            who = await platform.authenticate(socket)
            accept = queue.feed_filter(who)
        except IocError as exc:
            # Accept first so the client reads why (a refused handshake carries no reason).
            await socket.accept()
            await socket.close(code=1008, reason=exc.message[:120])
            return
        # Subscribe before the handshake completes: a client that is connected hears everything.
        subscription = platform.hub.subscribe(accept)
        try:
            await socket.accept()
            await stream(socket, subscription)
        finally:
            subscription.close()

    return router


async def stream(socket: WebSocket, subscription: Subscription) -> None:
    """Send a subscription's messages until the client leaves or the feed ends."""

    async def send() -> None:
        async for text in subscription:
            await socket.send_text(text)

    async def drain() -> None:
        # Clients only listen; reading is how a closed connection is noticed.
        while (await socket.receive())["type"] != "websocket.disconnect":
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
    if sender in done and sender.exception() is None:
        # The feed ended: the client fell too far behind, or the server is stopping.
        reason = "too slow: reconnect and reload" if subscription.dropped else "server stopping"
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await socket.close(code=1013 if subscription.dropped else 1012, reason=reason)
