"""Reference data endpoints: categories and traffic sensors."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ioc.api.body import read_body
from ioc.api.inputs import body_schema, json_body
from ioc.auth import Role
from ioc.errors import InvalidInput, MalformedBody
from ioc.events.validation import JSON_TYPES, explain
from ioc.params import unstorable
from ioc.platform import Platform
from ioc.store.reference import Sensor, list_sensors, upsert_sensors

_sensors = msgspec.json.Decoder(list[msgspec.Raw])
_sensor = msgspec.json.Decoder(Sensor)
_READERS = frozenset(Role)


def build_reference_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["reference data"])

    @router.get("/categories", summary="Field-report categories")
    async def categories(request: Request) -> list[dict[str, Any]]:
        (await platform.authenticate(request)).require(_READERS)
        async with platform.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT code, name_vi, default_deadline_hours FROM categories ORDER BY code"
            )
            rows = await cur.fetchall()
        return [{"code": c, "name_vi": n, "default_deadline_hours": h} for c, n, h in rows]

    @router.get("/sensors", summary="Registered traffic sensors (cursor pagination)")
    async def sensors(
        request: Request,
        after: Annotated[
            str | None, Query(description="the last sensor_id of the previous page")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> dict[str, Any]:
        (await platform.authenticate(request)).require(_READERS)
        async with platform.pool.connection() as conn:
            page = await list_sensors(conn, after, limit)
        return {
            "sensors": [msgspec.structs.asdict(s) for s in page],
            "next": page[-1].sensor_id if len(page) == limit else None,
        }

    @router.post(
        "/sensors",
        summary="Register or move sensors (a JSON array)",
        openapi_extra=json_body({"type": "array", "minItems": 1, "items": body_schema(Sensor)}),
    )
    async def register(request: Request) -> JSONResponse:
        (await platform.authenticate(request)).require(frozenset({Role.ADMIN}))
        body = await read_body(request, platform.settings.max_body_bytes, JSON_TYPES)
        try:
            items = _sensors.decode(body)
        except msgspec.MsgspecError as exc:
            raise MalformedBody("a JSON array of sensors is expected: " + explain(exc)[1]) from None
        good: list[Sensor] = []
        errors = []
        for number, raw in enumerate(items, start=1):
            try:
                sensor = _sensor.decode(raw)
            except msgspec.MsgspecError as exc:
                name, reason = explain(exc)
                errors.append({"line": number, "field": name, "reason": reason})
                continue
            if (refusal := unstorable(sensor.name)) is not None:
                errors.append({"line": number, "field": "name", "reason": refusal})
            else:
                good.append(sensor)
        if not good:
            raise InvalidInput("no sensor in the request was valid", errors)
        async with platform.pool.connection() as conn, conn.transaction():
            stored = await upsert_sensors(conn, good)
        async with platform.pool.connection() as conn:
            await platform.reference.load(conn)
        return JSONResponse({"stored": stored, "rejected": len(errors), "errors": errors})

    return router
