"""Ticket endpoints: the queue, one ticket, its history, actions, and the live feed."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Request, WebSocket
from fastapi.responses import Response

from ioc.api import inputs
from ioc.api.body import SMALL_BODY_BYTES, read_body
from ioc.api.feeds import serve_feed
from ioc.events.validation import JSON_TYPES
from ioc.params import query_of
from ioc.platform import Platform
from ioc.tickets import actions, queue
from ioc.tickets import filters as queue_filters
from ioc.tickets.states import MOVES, STATES, Move

log = logging.getLogger(__name__)

_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_TicketId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the ticket's id")]
# Text that is not blank (the domain strips it before checking that it was given).
_GIVEN = {"type": "string", "pattern": r"\S"}


def _action_schema() -> dict[str, Any]:
    """The action body: each action with the fields it needs (``MOVES``), given and not blank."""

    def needs(move: Move) -> tuple[str, ...]:
        return tuple(
            field
            for field, needed in (
                ("reason", move.needs_reason),
                ("assignee", move.needs_assignee),
                ("to_agency", move.needs_agency),
            )
            if needed
        )

    by_needs: dict[tuple[str, ...], list[str]] = {}
    for name, move in MOVES.items():
        by_needs.setdefault(needs(move), []).append(name)
    return {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "properties": {
            "action": {"type": "string", "enum": list(MOVES)},
            "assignee": {
                "type": "string",
                "description": "who works it (assign): the login of an official of the "
                "ticket's agency (GET /v1/users)",
            },
            "reason": {
                "type": "string",
                "description": "why: "
                + ", ".join(n for n, m in MOVES.items() if m.needs_reason)
                + " need one",
            },
            "to_agency": {"type": "string", "description": "the agency code (transfer)"},
        },
        "anyOf": [
            {
                "required": ["action", *fields],
                "properties": {"action": {"enum": names}, **dict.fromkeys(fields, _GIVEN)},
            }
            for fields, names in by_needs.items()
        ],
    }


_ACTION_SCHEMA = _action_schema()


_QUERY = inputs.query_parameters(
    inputs.query("state", inputs.any_of(STATES), "repeatable ticket state"),
    inputs.query("overdue", {"type": "boolean"}, "true: open and past the deadline; false: not"),
    inputs.query(
        "category", {"type": "array", "items": {"type": "string"}}, "repeatable category code"
    ),
    inputs.query(
        "bbox",
        {
            "type": "array",
            "items": {"type": "number", "minimum": -180, "maximum": 180},
            "minItems": 4,
            "maxItems": 4,
        },
        "min_lon,min_lat,max_lon,max_lat in degrees (min ≤ max; latitudes within ±90)",
    )
    | {"style": "form", "explode": False},
    inputs.query("since", {"type": "string"}, "opened at or after (ISO 8601; no offset: local)"),
    inputs.query("until", {"type": "string"}, "opened before (ISO 8601), not before since"),
    inputs.query(
        "agency",
        {"type": "string"},
        "agency code; `none`: the unrouted queue (no agency); `catch_all`: the configured "
        "catch-all agency (not for agency keys)",
    ),
    inputs.query("cursor", inputs.cursor("ticket"), "`next` of the previous page"),
    inputs.query(
        "limit",
        inputs.whole_number(1, queue_filters.MAX_LIMIT, queue_filters.DEFAULT_LIMIT),
        "tickets a page",
    ),
)


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


def build_tickets_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/tickets", tags=["tickets"])
    small = min(platform.settings.max_body_bytes, SMALL_BODY_BYTES)

    @router.get(
        "",
        summary="The ticket queue, most urgent deadline first (cursor pagination)",
        openapi_extra=_QUERY,
        responses={
            200: {"description": '{"tickets": [...], "next": cursor or null}'},
            **{code: _ERROR for code in (401, 403, 422, 503)},
        },
    )
    async def list_tickets(request: Request) -> Response:
        # The parameters are declared for the document (_QUERY); parsing them, with the
        # messages, is the domain's, so it reads the raw strings the client sent.
        who = await platform.authenticate(request)
        filters = queue_filters.parse_filters(
            query_of(request.query_params.multi_items()),
            platform.settings.zone,
            platform.reference.categories(),
            platform.settings.fallback_agency or None,
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
        action = actions.decode_action(await read_body(request, small, JSON_TYPES))
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
