"""The webhook delivery log: what was owed to each agency's endpoint and how each try went."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from ioc.alerts import deliveries as delivery_log
from ioc.params import query_of
from ioc.platform import Platform

_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the delivery's id")]


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


def build_deliveries_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])

    @router.get(
        "",
        summary="The webhook delivery log, newest first (cursor pagination)",
        responses={
            200: {"description": '{"deliveries": [...], "next": cursor or null}'},
            **{code: _ERROR for code in (401, 403, 422, 503)},
        },
    )
    async def list_deliveries(
        request: Request,
        agency: Annotated[
            str | None, Query(description="agency code (an agency key sees only its own)")
        ] = None,
        state: Annotated[
            list[str], Query(description="repeatable: " + ", ".join(delivery_log.STATES))
        ] = [],  # noqa: B006
        cursor: Annotated[str | None, Query(description="`next` of the previous page")] = None,
        limit: Annotated[
            str | None,
            Query(description=f"1–{delivery_log.MAX_LIMIT}, default {delivery_log.DEFAULT_LIMIT}"),
        ] = None,
    ) -> Response:
        # The parameters document the API; the domain parses the raw strings (and words errors).
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
