"""Admin endpoints: agencies, categories and responsibility rules."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request

from ioc.api.body import read_body
from ioc.api.inputs import body_schema, json_body
from ioc.auth import Role
from ioc.errors import MalformedBody
from ioc.events.validation import JSON_TYPES
from ioc.params import check_tree
from ioc.platform import Platform
from ioc.routing.rules import ResponsibilityConfig, apply_config, dump_config, parse_config

_ADMIN = frozenset({Role.ADMIN})
_READERS = frozenset({Role.ADMIN, Role.OPERATOR, Role.LEADER})


def build_admin_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["administration"])

    @router.get("/config", summary="Agencies, categories and responsibility rules")
    async def show(request: Request) -> Any:
        (await platform.authenticate(request)).require(_READERS)
        async with platform.pool.connection() as conn:
            return msgspec.to_builtins(await dump_config(conn))

    @router.put(
        "/config",
        summary="Upsert agencies and categories; replace the rules (same shape as GET)",
        openapi_extra=json_body(body_schema(ResponsibilityConfig)),
    )
    async def replace(request: Request) -> dict[str, Any]:
        (await platform.authenticate(request)).require(_ADMIN)
        body = await read_body(request, platform.settings.max_body_bytes, JSON_TYPES)
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedBody(f"malformed JSON: {exc}") from None
        check_tree(data, "request body")
        config = parse_config(data, "request body")
        async with platform.pool.connection() as conn:
            counts = await apply_config(conn, config)
        await platform.reload_routing(force=True)
        return {"applied": counts}

    return router
