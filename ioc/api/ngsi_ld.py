"""NGSI-LD at /ngsi-ld/v1: notifications from an Orion-LD subscription in, entities out.

Errors take the specification's shape (ETSI GS CIM 009, 5.5.3: RFC 7807 ProblemDetails with an
NGSI-LD error type such as ``https://uri.etsi.org/ngsi-ld/errors/BadRequestData``) rather than the
platform's own, so FIWARE clients read them as they read a broker's; each also carries the
platform's ``code`` and, where there are any, ``details``. This router renders them itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, Final

import msgspec
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from ioc.api.body import read_body
from ioc.api.errors import nested_too_deeply, status_of, translate
from ioc.errors import (
    InvalidInput,
    IocError,
    MalformedBody,
    NotFound,
    RateLimited,
    StoreUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)
from ioc.events.validation import media_type
from ioc.interop import ngsi_entities, ngsi_ld
from ioc.interop.ngsi_query import InvalidRequest
from ioc.interop.ngsi_request import EntityRequest, parse_request
from ioc.params import one, query_of
from ioc.platform import Platform

log = logging.getLogger(__name__)

ERRORS: Final = "https://uri.etsi.org/ngsi-ld/errors/"
CONTEXT_REL: Final = "http://www.w3.org/ns/json-ld#context"
JSON_LD: Final = "application/ld+json"
NOTIFY_TYPES: Final = ("application/json", JSON_LD)
_INLINE_BYTES: Final = 1024 * 1024
_LINK_CONTEXT = re.compile(r'<([^>]*)>[^,]*rel="?' + re.escape(CONTEXT_REL) + '"?')
_PROBLEM_SCHEMA: Final = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "details": {},
        "entities": {"type": "array", "items": {"type": "object"}},
    },
}


def _documented(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _PROBLEM_SCHEMA}},
    }


_COMMON: dict[int | str, dict[str, Any]] = {
    400: _documented("a parameter or the body is invalid (InvalidRequest or BadRequestData)"),
    401: _documented("no API key, or an unknown or revoked one"),
    403: _documented("the key's role may not do this"),
    429: _documented("too many failed authentications from this address; retry later"),
    503: _documented("the database is unavailable; retry after Retry-After seconds"),
}
_ENTITY = {"type": "object", "required": ["id", "type"]}
_RECEIVED = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {"type": "integer"},
        "entities": {"type": "array", "items": {"type": "object"}},
    },
}
_NOTIFICATION = {
    "type": "object",
    "description": "an NGSI-LD Notification (id, type, subscriptionId, notifiedAt, data)",
    "required": ["data"],
    "properties": {
        "type": {"type": "string", "enum": ["Notification"]},
        "data": {"type": "array", "items": {"type": "object"}},
    },
}


def problem_type(exc: IocError) -> tuple[str, str]:
    """(type, title) of the ProblemDetails for a domain error."""
    if isinstance(exc, InvalidRequest | MalformedBody):
        return ERRORS + "InvalidRequest", "The request is not valid"
    if isinstance(exc, InvalidInput):
        return (
            ERRORS + "BadRequestData",
            "The request holds data that does not meet the requirements",
        )
    if isinstance(exc, NotFound):
        return ERRORS + "ResourceNotFound", "The resource was not found"
    return "about:blank", HTTPStatus(status_of(exc)).phrase


def _status(exc: IocError) -> int:
    # NGSI-LD answers data it refuses with 400 (BadRequestData), where the platform says 422.
    return 400 if isinstance(exc, InvalidInput) else status_of(exc)


def problem(exc: IocError, **extra: Any) -> JSONResponse:
    kind, title = problem_type(exc)
    status = _status(exc)
    body: dict[str, Any] = {
        "type": kind,
        "title": title,
        "status": status,
        "detail": exc.message,
        "code": exc.code,
    }
    if exc.details is not None:
        body["details"] = exc.details
    body.update(extra)
    headers = {}
    if isinstance(exc, StoreUnavailable | RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status, headers)


def _refusal(exc: RequestValidationError) -> InvalidInput:
    details = [{"field": str(e["loc"][-1]), "reason": e["msg"]} for e in exc.errors()]
    return InvalidInput("; ".join(f"{d['field']}: {d['reason']}" for d in details), details)


class NgsiRoute(APIRoute):
    """A route whose errors are answered as NGSI-LD ProblemDetails."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except IocError as exc:
                return problem(exc)
            except RequestValidationError as exc:
                return problem(_refusal(exc))
            except RecursionError:
                return problem(nested_too_deeply())
            except Exception as exc:
                known = translate(exc)
                if known is None:
                    raise
                log.warning("database refused %s: %s", request.url.path, exc)
                return problem(known)

        return answer


def contexts_of(request: Request) -> list[str]:
    """The @context URLs a Link header names (recorded, never fetched)."""
    return [m.group(1) for m in _LINK_CONTEXT.finditer(request.headers.get("link", ""))]


def _interval(request: Request) -> int | None:
    text = one(query_of(request.query_params.multi_items()), "interval_s")
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) <= 86_400:
        reason = f"{text!r} is not a whole number of seconds from 1 to 86400"
        raise InvalidInput(f"interval_s: {reason}", [{"field": "interval_s", "reason": reason}])
    return int(text)


def _links(request: Request, offset: int, limit: int, shown: int, total: int | None) -> list[str]:
    """Link header values: the @context, and the next and previous pages."""
    links = [f'<{ngsi_entities.SDM_CONTEXT}>; rel="{CONTEXT_REL}"; type="{JSON_LD}"']
    base = request.url
    more = shown == limit and (total is None or offset + limit < total)
    if limit and more:
        links.append(f'<{base.include_query_params(offset=offset + limit)}>; rel="next"')
    if limit and offset:
        links.append(f'<{base.include_query_params(offset=max(0, offset - limit))}>; rel="prev"')
    return links


def _page(
    request: Request, asked: EntityRequest, rows: list[dict[str, Any]], total: int | None
) -> Response:
    """The entities of a page in the representation and media type asked for, with the count
    and the @context and paging links in headers."""
    kind = asked.query.kind.name if asked.query is not None else ""
    found = ngsi_entities.render(kind, rows, asked.form, asked.attrs) if rows else []
    headers: dict[str, str] = {}
    if total is not None:
        headers["NGSILD-Results-Count"] = str(total)
    ld = JSON_LD in request.headers.get("accept", "")
    if ld:
        context = [ngsi_entities.SDM_CONTEXT, ngsi_entities.CORE_CONTEXT]
        found = [{**entity, "@context": context} for entity in found]
    response = Response(
        msgspec.json.encode(found), 200, headers, media_type=JSON_LD if ld else "application/json"
    )
    for link in _links(request, asked.offset, asked.limit, len(rows), total):
        if not ld or CONTEXT_REL not in link:  # JSON-LD carries its context in the body
            response.headers.append("Link", link)
    return response


def build_ngsi_ld_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"], route_class=NgsiRoute)

    @router.post(
        "/notify",
        summary="Receive an Orion-LD notification of TrafficFlowObserved entities",
        description="Each entity (normalized, concise or key-values) becomes a reading of the "
        "sensor its refDevice or id names, through the same intake as POST /v1/events/batch. "
        "The answer says what happened to each entity; when none was stored (nor already "
        "stored) it is a 400 BadRequestData carrying the same list. `interval_s` gives the "
        "observation period for entities whose dateObserved is an instant. Needs a source key "
        "(send it from the subscription with receiverInfo).",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {t: {"schema": _NOTIFICATION} for t in NOTIFY_TYPES},
            },
            "parameters": [
                {
                    "name": "interval_s",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 86400},
                }
            ],
        },
        responses={
            200: {
                "description": "what happened to each entity",
                "content": {"application/json": {"schema": _RECEIVED}},
            },
            **_COMMON,
            413: _documented("the body or the number of entities is over the limit"),
            415: _documented("the body is not application/json or application/ld+json"),
        },
    )
    async def notify(request: Request) -> Response:
        who = await platform.authenticate(request)
        kind = media_type(request.headers.get("content-type"))
        if kind not in NOTIFY_TYPES:
            raise UnsupportedMediaType(
                f"content type {kind or '(none)'!r}: send the notification as "
                + " or ".join(NOTIFY_TYPES)
            )
        interval = _interval(request)
        body = await read_body(request, platform.settings.max_body_bytes)
        try:
            if len(body) > _INLINE_BYTES:  # large bodies are decoded off the event loop
                notification = await asyncio.to_thread(msgspec.json.decode, body)
            else:
                notification = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedBody(f"the body is not JSON: {exc}") from None
        received = await ngsi_ld.receive(
            platform.intake,
            notification,
            contexts_of(request),
            who,
            interval,
            platform.settings.max_batch_events,
        )
        answer = received.as_dict()
        if received.nothing_taken:
            failure = InvalidInput("no entity of the notification was stored")
            return problem(failure, **answer)
        return JSONResponse(answer)

    @router.get(
        "/entities",
        summary="Query entities: TrafficFlowObserved, Alert, Open311ServiceRequest",
        description="NGSI-LD query (ETSI GS CIM 009, 5.7.2) over the platform's state: "
        "`type` (required: TrafficFlowObserved, the latest reading of each sensor; Alert, the "
        "open alerts; Open311ServiceRequest, the open tickets without personal data), `id`, "
        "`q`, `georel`/`geometry`/`coordinates`, `attrs`, `options` (normalized, concise, "
        "keyValues), `limit` (default 20, at most 1000), `offset`, `count` (the total in "
        "NGSILD-Results-Count). Accept application/ld+json puts the @context in each entity; "
        "otherwise it is in the Link header. Needs an operator, agency, leader or admin key.",
        responses={
            200: {
                "description": "the entities of the page",
                "content": {
                    "application/json": {"schema": {"type": "array", "items": _ENTITY}},
                    JSON_LD: {"schema": {"type": "array", "items": _ENTITY}},
                },
            },
            **_COMMON,
        },
        openapi_extra={
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": schema}
                for name, schema in (
                    ("type", {"type": "string", "examples": list(ngsi_entities.TYPES)}),
                    ("id", {"type": "string"}),
                    ("q", {"type": "string"}),
                    ("georel", {"type": "string"}),
                    ("geometry", {"type": "string", "enum": ["Point", "Polygon", "MultiPolygon"]}),
                    ("coordinates", {"type": "string"}),
                    ("geoproperty", {"type": "string", "enum": ["location"]}),
                    ("attrs", {"type": "string"}),
                    ("options", {"type": "string", "enum": list(ngsi_entities.FORMATS)}),
                    ("limit", {"type": "integer", "minimum": 0, "maximum": 1000}),
                    ("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
                    ("count", {"type": "boolean"}),
                )
            ]
        },
    )
    async def entities(request: Request) -> Response:
        who = await platform.authenticate(request)
        who.require(ngsi_entities.READERS)
        asked = parse_request(query_of(request.query_params.multi_items()))
        rows: list[dict[str, Any]] = []
        total: int | None = 0 if asked.count else None
        if asked.query is not None:
            async with platform.pool.connection() as conn:
                rows, total = await ngsi_entities.find(conn, asked.query, who)
        return _page(request, asked, rows, total)

    return router
