"""The webhook delivery log: what was owed to each agency's endpoint and how each try went."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from ioc.alerts import deliveries as delivery_log
from ioc.api import inputs
from ioc.params import query_of
from ioc.platform import Platform

_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the delivery's id")]


_QUERY = inputs.query_parameters(
    inputs.query("agency", {"type": "string"}, "agency code (an agency key sees only its own)"),
    inputs.query("state", inputs.any_of(delivery_log.STATES), "repeatable delivery state"),
    inputs.query("cursor", inputs.cursor("delivery"), "`next` of the previous page"),
    inputs.query(
        "limit",
        inputs.whole_number(1, delivery_log.MAX_LIMIT, delivery_log.DEFAULT_LIMIT),
        "deliveries a page",
    ),
)


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


def build_deliveries_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])

    @router.get(
        "",
        summary="The webhook delivery log, newest first (cursor pagination)",
        openapi_extra=_QUERY,
        responses={
            200: {"description": '{"deliveries": [...], "next": cursor or null}'},
            **{code: _ERROR for code in (401, 403, 422, 503)},
        },
    )
    async def list_deliveries(request: Request) -> Response:
        # The parameters are declared for the document (_QUERY); the domain parses the raw
        # strings (and words the errors).
        who = await platform.authenticate(request)
        filters = delivery_log.parse_filters(query_of(request.query_params.multi_items()))
        async with platform.pool.connection() as conn:
            return _json(await delivery_log.list_deliveries(conn, who, filters))

    @router.get(
        "/{delivery_id}",
        summary="One delivery: its payload and every attempt, oldest first",
        responses={code: _ERROR for code in (401, 403, 404, 422, 503)},
    )
    async def get_delivery(request: Request, delivery_id: _DeliveryId) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await delivery_log.get_delivery(conn, who, delivery_id))

    @router.post(
        "/{delivery_id}/retry",
        summary="Make a dead or pending delivery due now (admin); a dead one gets a fresh "
        "series of attempts",
        responses={
            200: {"description": "the delivery, as GET shows it"},
            **{code: _ERROR for code in (401, 403, 404, 409, 422, 503)},
        },
    )
    async def retry(request: Request, delivery_id: _DeliveryId) -> Response:
        who = await platform.authenticate(request)
        async with platform.pool.connection() as conn:
            return _json(await delivery_log.retry(conn, who, delivery_id, platform.clock.now()))

    return router
