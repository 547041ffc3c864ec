"""Alert endpoints: list, one alert, acknowledge, silences, the live feed; dossier clocks."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Request, WebSocket
from fastapi.responses import Response

from ioc.alerts import queries as q
from ioc.api.body import read_json
from ioc.api.feeds import serve_feed
from ioc.params import query_of
from ioc.platform import Platform
from ioc.tickets.actions import actor_of

_ERROR: dict[str, Any] = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
_SILENCE_SCHEMA = {
    "type": "object",
    "required": ["matchers", "ends_at"],
    "additionalProperties": False,
    "properties": {
        "matchers": {
            "type": "object",
            "description": "all must match (at least one): " + ", ".join(q.MATCHER_KEYS),
            "minProperties": 1,
            "propertyNames": {"enum": list(q.MATCHER_KEYS)},
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 128},
        },
        "starts_at": {"type": "string", "format": "date-time", "description": "default: now"},
        "ends_at": {
            "type": "string",
            "format": "date-time",
            "description": "after starts_at and in the future",
        },
        "comment": {"type": "string", "maxLength": 2000},
    },
}


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


def build_alerts_router(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["alerts"])
    errors: dict[int | str, dict[str, Any]] = {code: _ERROR for code in (401, 403, 404, 422, 503)}

    @router.get(
        "/v1/alerts",
        summary="Alerts, newest first: status (active|resolved|all), agency, rule, level, "
        "subject_kind, subject_id, category; cursor pagination",
        responses=errors,
    )
    async def list_alerts(request: Request) -> Response:
        who = await platform.authenticate(request)
        query = query_of(request.query_params.multi_items())
        async with platform.pool.connection() as conn:
            page = await q.list_alerts(conn, who, query)
        return _json(page)

    @router.get("/v1/alerts/{alert_id}", summary="One alert", responses=errors)
    async def get_alert(request: Request, alert_id: _Id) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await q.get_alert(conn, who, alert_id))

    @router.post(
        "/v1/alerts/{alert_id}/ack",
        summary="Acknowledge an alert (stops its repeats)",
        responses=errors,
    )
    async def ack(request: Request, alert_id: _Id) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            alert = await q.acknowledge(conn, who, alert_id, actor_of(who), platform.clock.now())
        return _json(alert)

    @router.get("/v1/silences", summary="Silences not yet over", responses=errors)
    async def list_silences(request: Request) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await q.list_silences(conn, who, platform.clock.now()))

    @router.post(
        "/v1/silences",
        summary="Hold back delivery of the alerts the matchers select, for a time window",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _SILENCE_SCHEMA}},
            }
        },
        responses={**errors, 400: _ERROR, 413: _ERROR, 415: _ERROR},
    )
    async def create_silence(request: Request) -> Response:
        who = await platform.authenticate(request)
        body = await read_json(request, platform.settings.max_body_bytes)
        async with platform.pool.connection() as conn:
            silence = await q.create_silence(conn, who, body, actor_of(who), platform.clock.now())
        return _json(silence, 201)

    @router.delete(
        "/v1/silences/{silence_id}", summary="End a silence now", responses={**errors, 409: _ERROR}
    )
    async def expire_silence(request: Request, silence_id: _Id) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await q.expire_silence(conn, who, silence_id, platform.clock.now()))

    @router.get(
        "/v1/dossiers/{dossier_id}",
        summary="A dossier's state, SLA clock and apology letters",
        responses=errors,
    )
    async def get_dossier(request: Request, dossier_id: str) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await q.dossier(conn, who, dossier_id))

    @router.websocket("/v1/alerts/ws")
    async def live(socket: WebSocket) -> None:
        """Alerts as they are raised, acknowledged and resolved; an agency hears its own."""
        await serve_feed(socket, platform, q.feed_filter)

    return router
