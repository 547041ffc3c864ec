"""The one place that maps errors to HTTP statuses, and the one error shape of the API:
``{"error": {"code": ..., "message": ..., "details": ...}}``."""

from __future__ import annotations

import logging
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


def respond(exc: errors.IocError) -> JSONResponse:
    headers = {}
    if isinstance(exc, errors.StoreUnavailable | errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details), status_of(exc), headers=headers
    )


def install(app: FastAPI) -> None:
    async def domain(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.IocError)
        return respond(exc)

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
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['reason']}" for d in details)
        return JSONResponse(error_body("invalid_input", message, details), 422)

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    app.add_exception_handler(errors.IocError, domain)
    app.add_exception_handler(psycopg.OperationalError, unavailable)
    app.add_exception_handler(PoolTimeout, unavailable)
    app.add_exception_handler(psycopg.Error, database)
    app.add_exception_handler(RecursionError, recursion)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
