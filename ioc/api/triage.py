"""Triage endpoints: operators correct tickets (recategorise, move the pin, merge, split, spam,
not actionable) with a dry-run preview, and read the reports a ticket groups."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from ioc.api.body import SMALL_BODY_BYTES, read_body
from ioc.errors import StoreUnavailable
from ioc.events.validation import JSON_TYPES
from ioc.platform import Platform
from ioc.tickets import regroup, triage
from ioc.tickets.states import TRIAGE_MOVES

_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_TicketId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the ticket's id")]
_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["action", "reason"],
    "additionalProperties": False,
    "properties": {
        "action": {"type": "string", "enum": list(TRIAGE_MOVES)},
        "reason": {"type": "string", "description": "why (required; goes into the history)"},
        "category": {"type": "string", "description": "the new category (recategorise)"},
        "lon": {"type": "number", "minimum": -180, "maximum": 180, "description": "move_pin"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90, "description": "move_pin"},
        "into": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2**63 - 1,
            "description": "the ticket kept (merge)",
        },
        "report": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2**63 - 1,
            "description": "the report (split)",
        },
        "dry_run": {
            "type": "boolean",
            "description": "true: answer what the move would do, change nothing",
        },
    },
}


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


def build_triage_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/tickets", tags=["triage"])

    @router.post(
        "/{ticket_id}/triage",
        summary="Operators' triage: " + ", ".join(TRIAGE_MOVES) + " (dry_run: a preview)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _REQUEST_SCHEMA}},
            }
        },
        responses={
            200: {"description": '{"action", "dry_run", "ticket": after, "other": ticket}'},
            **{code: _ERROR for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)},
        },
    )
    async def post_triage(request: Request, ticket_id: _TicketId) -> Response:
        who = await platform.authenticate(request)
        who.require(triage.TRIAGERS)
        move = triage.decode_request(
            await read_body(
                request, min(platform.settings.max_body_bytes, SMALL_BODY_BYTES), JSON_TYPES
            )
        )
        desk = platform.desk
        if desk is None:
            raise StoreUnavailable("routing is not loaded yet; try again")
        async with platform.pool.connection() as conn:
            outcome = await triage.triage(
                conn,
                who,
                ticket_id,
                move,
                platform.clock.now(),
                platform.book,
                desk.router,
                platform.reference.categories(),
            )
        return _json(outcome)

    @router.get(
        "/{ticket_id}/reports",
        summary="The field reports a ticket groups, oldest first (never the reporter)",
        responses={code: _ERROR for code in (401, 403, 404, 422, 503)},
    )
    async def get_reports(request: Request, ticket_id: _TicketId) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await regroup.reports_of(conn, who, ticket_id))

    return router
