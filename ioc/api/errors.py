"""The one place that maps errors to HTTP statuses, and the one error shape of the API:
``{"error": {"code": ..., "message": ..., "details": ...}}``."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException

from ioc import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.IocError], int] = {
    errors.MalformedBody: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.InvalidInput: 422,
    errors.RateLimited: 429,
    errors.StoreUnavailable: 503,
    errors.ConfigError: 500,
}

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def status_of(exc: errors.IocError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def nested_too_deeply() -> errors.MalformedBody:
    return errors.MalformedBody("the JSON is nested too deeply")


def to_store_unavailable(exc: Exception) -> errors.StoreUnavailable:
    return errors.StoreUnavailable(
        f"the database is unavailable ({type(exc).__name__}); retry later"
    )


def translate(exc: Exception) -> errors.IocError | None:
    """The domain error a database failure means for the caller, or None (our own fault).

    A value the database refuses as data (a NUL byte, an untranslatable character, a number out
    of range) came from the request: the caller's 422. Validation should have named the field
    before the database was asked; this is the last line, logged so the gap gets closed.
    """
    if isinstance(exc, psycopg.OperationalError | PoolTimeout):
        return to_store_unavailable(exc)
    if isinstance(exc, psycopg.DataError | UnicodeEncodeError):
        log.warning("a value reached the database unvalidated: %s", exc)
        return errors.InvalidInput(
            "a value in the request cannot be stored (text with a NUL character or a lone "
            "surrogate, or a number or date out of range); nothing was stored"
        )
    return None


def allowed_methods(request: Request) -> list[str]:
    """Every method the documented operations answer at this path (for ``Allow`` on a 405)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")  # answered wherever GET is
    return sorted(methods)


def respond(exc: errors.IocError) -> JSONResponse:
    headers = {}
    if isinstance(exc, errors.StoreUnavailable | errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details), status_of(exc), headers=headers
    )


def _field(location: Any) -> str:
    """A parameter by the name clients send (``limit``, not ``query.limit``)."""
    parts = [str(p) for p in location]
    if len(parts) > 1 and parts[0] in ("query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts)


def install(app: FastAPI) -> None:
    async def domain(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.IocError)
        return respond(exc)

    async def refused_data(request: Request, exc: Exception) -> JSONResponse:
        known = translate(exc)
        assert known is not None
        return respond(known)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
        return respond(to_store_unavailable(exc))

    async def database(request: Request, exc: Exception) -> JSONResponse:
        # Not the caller's fault and nothing they can fix: log it whole, answer briefly.
        log.error("database error during %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            error_body(
                "internal_error", "the request failed inside the database; it was not stored"
            ),
            500,
        )

    async def recursion(request: Request, exc: Exception) -> JSONResponse:
        # Decoders give up on deeply nested input this way; nothing else here recurses deeply.
        log.info("too deeply nested input in %s %s", request.method, request.url.path)
        return respond(nested_too_deeply())

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [{"field": _field(e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        message = "; ".join(f"{d['field']}: {d['reason']}" for d in details)
        return JSONResponse(error_body("invalid_input", message, details), 422)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path; the resource
            # answers the methods of every route at that path (pages keep Starlette's).
            headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=headers)

    app.add_exception_handler(errors.IocError, domain)
    app.add_exception_handler(psycopg.OperationalError, unavailable)
    app.add_exception_handler(PoolTimeout, unavailable)
    app.add_exception_handler(psycopg.Error, database)
    app.add_exception_handler(RecursionError, recursion)
    app.add_exception_handler(psycopg.DataError, refused_data)
    app.add_exception_handler(UnicodeEncodeError, refused_data)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)


# --- the statuses the document declares ---------------------------------------------------------

_ERROR_RESPONSE: dict[str, Any] = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
}
_MEANING = {
    400: "malformed request body",
    401: "no API key, or an unknown or revoked one",
    403: "the key's role may not do this",
    404: "no such resource (or not visible to this key)",
    413: "request body over the documented limit",
    415: "request body of a media type this operation does not read",
    422: "a parameter or field is invalid (details name it)",
    429: "too many failed authentications from this address; retry later",
    503: "the database is unavailable; retry after Retry-After seconds",
}
# Operations that need no key and take no input: nothing of the above can happen to them.
_PUBLIC = frozenset({"/healthz", "/readyz"})
# Open311 and NGSI-LD routes declare their specifications' own error formats themselves.
_OWN_FORMATS = ("/open311/", "/ngsi-ld/")


def document(document: dict[str, Any]) -> None:
    """Declare, once for every operation, the error statuses the platform can answer it with
    (in the one error shape), unless the route already declared them itself."""
    for path, operations in document.get("paths", {}).items():
        if path in _PUBLIC or path.startswith(_OWN_FORMATS):
            continue
        for operation in operations.values():
            statuses = [401, 403, 422, 429, 503]
            if "requestBody" in operation:
                statuses += [400, 413, 415]
            if any(p.get("in") == "path" for p in operation.get("parameters", ())):
                statuses.append(404)
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                declared = responses.setdefault(str(status), {"description": _MEANING[status]})
                if "HTTPValidationError" in str(declared.get("content")):
                    # FastAPI's default 422; this platform answers in its own shape.
                    declared.update(description=_MEANING[status], content=None)
                if not declared.get("content"):
                    declared.update(_ERROR_RESPONSE)
