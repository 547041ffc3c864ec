"""``GET /v1/public/lookup``: a field report's or a dossier's public status by its code, with no
key, rate-limited per client address (the page ``/lookup`` shares the allowance)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ioc import lookup
from ioc.api.throttle import FailureLimiter, client_address
from ioc.platform import Platform
from ioc.settings import Settings

_ERROR = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_STEP = {
    "type": "object",
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "state": {"type": "string"},
        "label": {"type": "string"},
        "agency": {"type": ["string", "null"]},
        "new_appointment_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_WHEN = {"type": ["string", "null"], "format": "date-time"}
_STATUS = {
    "type": "object",
    "required": ["kind", "code", "state", "state_label", "history"],
    "properties": {
        "kind": {"type": "string", "enum": ["field_report", "dossier"]},
        "code": {"type": "string"},
        "subject": {"type": "string", "description": "the category's or procedure's name"},
        "state": {"type": "string"},
        "state_label": {"type": "string", "description": "the state, in Vietnamese"},
        "agency": {"type": ["string", "null"], "description": "the agency responsible"},
        "opened_at": _WHEN,
        "deadline_at": _WHEN,
        "finished_at": _WHEN,
        "result": {"type": ["string", "null"], "enum": ["early", "on_time", "late", None]},
        "result_label": {"type": ["string", "null"]},
        "time_zone": {"type": "string"},
        "history": {"type": "array", "items": _STEP},
    },
}
CodeParam = Annotated[
    str,
    Query(
        min_length=1,
        max_length=lookup.MAX_CODE,
        description="a field report's code (PA-<number>-<8 characters>, given when it was "
        "sent) or a dossier's code (as on the receipt)",
    ),
]


def lookup_limiter(settings: Settings) -> FailureLimiter:
    """The one allowance per client address that the endpoint and the page both spend."""
    return FailureLimiter(settings.lookup_burst, settings.lookup_per_minute, what="lookups")


def hidden(settings: Settings) -> frozenset[str]:
    return frozenset(filter(None, (c.strip() for c in settings.lookup_hidden.split(","))))


async def public_status(
    platform: Platform, limiter: FailureLimiter, request: Request, code: str
) -> lookup.Status:
    """Spend one lookup of the caller's allowance (RateLimited when none is left), then look."""
    address = client_address(request)
    limiter.check(address)
    limiter.failed(address)  # every lookup spends, found or not: guessing costs the same
    secret = hidden(platform.settings)
    async with platform.read_pool.connection() as conn:
        return await lookup.look_up(conn, code, secret, secret)


def build_lookup_router(platform: Platform, limiter: FailureLimiter) -> APIRouter:
    router = APIRouter(prefix="/v1/public", tags=["public"])
    zone = platform.settings.zone

    @router.get(
        "/lookup",
        summary="Look a field report or a dossier up by its code (no key needed)",
        description="The state, the agency responsible, the deadline and the history (state "
        "changes and their times, in the platform's time zone, with Vietnamese labels), "
        "without personal data or officials' names. A code that does not exist and one that "
        "may not be shown get the same 404. Each client address has a small allowance of "
        "lookups (IOC_LOOKUP_BURST, refilled at IOC_LOOKUP_PER_MINUTE); beyond it, 429 with "
        "Retry-After.",
        responses={
            200: {"content": {"application/json": {"schema": _STATUS}}},
            404: {"description": "no such code, or not one the public may see", **_ERROR},
            422: {"description": "no code, or one too long", **_ERROR},
            429: {"description": "too many lookups; retry after Retry-After seconds", **_ERROR},
        },
    )
    async def look_up(request: Request, code: CodeParam) -> JSONResponse:
        found = await public_status(platform, limiter, request, code)
        answer: dict[str, Any] = found.as_dict(zone)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    return router
