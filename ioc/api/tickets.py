"""Ticket endpoints: the queue, one ticket, its history, actions, and the live feed."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Query, Request, WebSocket
from fastapi.responses import Response

from ioc.api.body import read_json
from ioc.api.feeds import serve_feed
from ioc.params import query_of
from ioc.platform import Platform
from ioc.tickets import actions, queue
from ioc.tickets import filters as queue_filters
from ioc.tickets.states import MOVES

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
        limit: Annotated[
            str | None, Query(description=f"1–{queue_filters.MAX_LIMIT}, default 100")
        ] = None,
    ) -> Response:
        # The parameters above document the API; parsing them (with the messages) is the
        # domain's, so they arrive as the raw strings the client sent.
        who = await platform.authenticate(request)
        filters = queue_filters.parse_filters(
            query_of(request.query_params.multi_items()),
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
            **{code: _ERROR for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)},
        },
    )
    async def post_action(request: Request, ticket_id: _TicketId) -> Response:
        who = await platform.authenticate(request)
        who.require(actions.ACTORS)
        action = actions.decode_action(await read_json(request, platform.settings.max_body_bytes))
        async with platform.pool.connection() as conn:
            ticket = await actions.act(
                conn, who, ticket_id, action, platform.clock.now(), platform.book
            )
        return _json(ticket)

    @router.websocket("/ws")
    async def live(socket: WebSocket) -> None:
        """New and changed tickets as JSON messages; an agency key hears only its own."""
        await serve_feed(socket, platform, queue.feed_filter)

    return router
