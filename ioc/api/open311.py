"""Open311 GeoReport v2 at /open311/v2: services, and service requests backed by our tickets.

Every endpoint answers in the format its extension names (``.json`` or ``.xml``). Errors take
the spec's shape, ``[{"code": 400, "description": ...}]`` or ``<errors><error>…``, rather than
the platform's own: this router renders them itself. Reads are public; posting needs api_key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from ioc.api.body import SMALL_BODY_BYTES, read_body
from ioc.api.errors import status_of, translate
from ioc.api.media import submit_with_media
from ioc.api.security import token_of
from ioc.api.uploads import MULTIPART, is_multipart, read_form
from ioc.auth import Principal, Role
from ioc.errors import (
    InvalidInput,
    IocError,
    RateLimited,
    StoreUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)
from ioc.events.validation import media_type
from ioc.interop import open311, open311_input
from ioc.lookup import code_of_report
from ioc.media.uploads import Part
from ioc.platform import Platform

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
_WRITERS = frozenset({Role.SOURCE})
Format = Annotated[Literal["json", "xml"], Path(description="the response format")]
_ERRORS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}


def _documented(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": _ERRORS_SCHEMA},
            "text/xml": {"schema": {"type": "string"}},
        },
    }


_TEXT = {"type": "string"}
_FORM_SCHEMA = {
    "type": "object",
    # The spec lets address_string stand for a location; here a request must be on the map.
    "required": ["service_code", "lat", "long"],
    "properties": {
        "api_key": {**_TEXT, "description": "a source key (or send it as Authorization)"},
        "service_code": {**_TEXT, "description": "a code of services.json"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "long": {"type": "number", "minimum": -180, "maximum": 180},
        "address_string": {**_TEXT, "maxLength": 500},
        "description": {**_TEXT, "maxLength": open311.MAX_DESCRIPTION},
        "email": {**_TEXT, "maxLength": 254},
        "first_name": {**_TEXT, "maxLength": 100},
        "last_name": {**_TEXT, "maxLength": 100},
        "phone": {**_TEXT, "maxLength": 32},
        "media_url": {**_TEXT, "maxLength": 2048, "pattern": "^https?://"},
    },
}
_MULTIPART_SCHEMA = {
    **_FORM_SCHEMA,
    "properties": {
        **_FORM_SCHEMA["properties"],  # type: ignore[dict-item]
        "media": {
            "type": "string",
            "format": "binary",
            "description": "a photo (JPEG, PNG, WebP, HEIC)",
        },
    },
}
_OK = {
    "description": "the answer, in the format the extension names",
    "content": {"application/json": {}, "text/xml": {"schema": {"type": "string"}}},
}
# The statuses every Open311 route may answer, in the spec's error format.
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _OK,
    400: _documented("a parameter or field is invalid, or the format is not json or xml"),
    503: _documented("the database is unavailable; retry after Retry-After seconds"),
}
_ONE = {**_RESPONSES, 404: _documented("no such service or service request")}
_POST = {
    **_RESPONSES,
    403: _documented("api_key is missing, unknown, or not a source key"),
    413: _documented("the form is over the body limit"),
    415: _documented(f"the body is not {FORM}"),
    429: _documented("too many failed authentications from this address; retry later"),
}


def _absolute(request: Request, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Photos stored here are named by their path; clients get the full URL (fetching it
    needs a key of a role that may see the ticket's photos)."""
    base = str(request.base_url).rstrip("/")
    for item in found:
        url = item.get("media_url")
        if isinstance(url, str) and url.startswith("/"):
            item["media_url"] = base + url
    return found


def _format(fmt: str) -> str:
    if fmt not in open311.MEDIA_TYPES:
        raise InvalidInput(f"format {fmt!r} is not offered; use .json or .xml")
    return fmt


def _render(fmt: str, root: str, value: Any, status: int = 200, **headers: str) -> Response:
    if fmt == "xml":
        return Response(
            open311.to_xml(root, value), status, headers, media_type="text/xml; charset=utf-8"
        )
    return JSONResponse(value, status, headers)


def _failure(request: Request, exc: IocError) -> Response:
    # Open311 answers 403 for a missing or wrong api_key, and 400 for any field it refuses.
    if isinstance(exc, Unauthenticated):
        status = 403
    elif isinstance(exc, InvalidInput):
        status = 400
    else:
        status = status_of(exc)
    headers = {}
    if isinstance(exc, StoreUnavailable | RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    fmt = "xml" if request.path_params.get("fmt") == "xml" else "json"
    return _render(fmt, "errors", open311.errors(status, exc.message), status, **headers)


def _refusal(exc: RequestValidationError) -> InvalidInput:
    reasons = []
    for error in exc.errors():
        name = str(error["loc"][-1])
        if name == "fmt":
            reasons.append(f"format {error.get('input')!r} is not offered; use .json or .xml")
        else:
            reasons.append(f"{name}: {error['msg']}")
    return InvalidInput("; ".join(reasons))


class Open311Route(APIRoute):
    """A route whose domain errors are answered in the Open311 error format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except IocError as exc:
                return _failure(request, exc)
            except RequestValidationError as exc:
                return _failure(request, _refusal(exc))
            except Exception as exc:
                known = translate(exc)
                if known is None:
                    raise
                log.warning("database refused %s: %s", request.url.path, exc)
                return _failure(request, known)

        return answer


def build_open311_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route)
    zone = platform.settings.zone

    async def writer(request: Request, fields: dict[str, str]) -> Principal:
        token = fields.get("api_key")
        if token is None:
            try:
                token = token_of(request)
            except Unauthenticated:
                raise Unauthenticated("api_key is required to post a service request") from None
        who = await platform.auth.verify_key(request, token)
        who.require(_WRITERS)
        return who

    @router.get(
        "/discovery.{fmt}",
        summary="Open311 discovery: where and how to call this API",
        responses=_RESPONSES,
    )
    async def discovery(request: Request, fmt: Format) -> Response:
        base = str(request.base_url).rstrip("/") + router.prefix
        return _render(_format(fmt), "discovery", open311.discovery(base))

    @router.get(
        "/services.{fmt}",
        summary="Service types: our field-report categories",
        responses=_RESPONSES,
    )
    async def services(fmt: Format) -> Response:
        kind = _format(fmt)
        async with platform.read_pool.connection() as conn:
            listed = await open311.services(conn)
        return _render(kind, "services", listed)

    @router.get(
        "/services/{service_code}.{fmt}", summary="One service's definition", responses=_ONE
    )
    async def service_definition(service_code: str, fmt: Format) -> Response:
        kind = _format(fmt)
        async with platform.read_pool.connection() as conn:
            await open311.find_service(conn, service_code)
        return _render(kind, "service_definition", open311.definition(service_code))

    @router.post(
        "/requests.{fmt}",
        summary="Post a service request (a form with api_key: a source key)",
        description="application/x-www-form-urlencoded: service_code, lat, long, "
        "address_string, description, email, first_name, last_name, phone, media_url; or "
        "multipart/form-data with the same fields and photos in the file field media. "
        "It is stored as a field report and routed like any other.",
        responses=_POST,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    FORM: {"schema": _FORM_SCHEMA},
                    MULTIPART: {"schema": _MULTIPART_SCHEMA},
                },
            }
        },
    )
    async def create(request: Request, fmt: Format) -> Response:
        kind = _format(fmt)
        files: list[Part] = []
        if is_multipart(request):
            form = await read_form(request, platform.media.limits)
            posted, files = open311_input.checked_fields(list(form.fields.items())), form.files
        else:
            body = await read_body(request, min(platform.settings.max_body_bytes, SMALL_BODY_BYTES))
            if (
                body
                and not body.isspace()
                and media_type(request.headers.get("content-type")) != FORM
            ):
                raise UnsupportedMediaType(f"send the service request as {FORM} or {MULTIPART}")
            posted = open311_input.parse_form(body)
        query = {k: v for k, v in request.query_params.items() if v.strip()}
        fields = {**query, **posted}
        who = await writer(request, fields)
        report = open311_input.report_of(
            fields,
            open311_input.new_external_id(),
            platform.clock.now(),
            platform.reference.categories(),
        )
        receipt, _ = await submit_with_media(platform, report, files, who)
        assert who.source is not None  # a source key always names its source
        async with platform.pool.connection() as conn:
            ticket = await open311.ticket_of_report(conn, who.source, report.external_id)
            created = await open311.requests_by_id(conn, (ticket,), zone)
            code = receipt.lookup_code or await code_of_report(conn, who.source, report.external_id)
        return _render(kind, "service_requests", [open311.receipt(created[0], code)])

    @router.get(
        "/requests.{fmt}",
        summary="Service requests (the last 90 days unless dated; at most 1000)",
        description="Filters: service_request_id (comma list; overrides the others), "
        "service_code, start_date, end_date (ISO 8601), status (open, closed).",
        responses=_RESPONSES,
    )
    async def search(request: Request, fmt: Format) -> Response:
        kind = _format(fmt)
        params = {k: ",".join(request.query_params.getlist(k)) for k in request.query_params}
        query = open311_input.parse_search(
            params, platform.clock.now(), zone, platform.reference.categories()
        )
        async with platform.read_pool.connection() as conn:
            found = await open311.find_requests(conn, query, zone)
        return _render(kind, "service_requests", _absolute(request, found))

    @router.get(
        "/requests/{service_request_id}.{fmt}", summary="One service request", responses=_ONE
    )
    async def one(request: Request, service_request_id: str, fmt: Format) -> Response:
        kind = _format(fmt)
        async with platform.read_pool.connection() as conn:
            found = await open311.find_request(conn, service_request_id, zone)
        return _render(kind, "service_requests", _absolute(request, [found]))

    return router
