"""The app factory: the composition root where routers, errors and resources are assembled."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from alerting.setup import working_calendar
from ingest import mqtt_setup
from ioc import __version__
from ioc.api import errors
from ioc.api.admin import build_admin_router
from ioc.api.alerts import build_alerts_router
from ioc.api.background import install_alerting
from ioc.api.body import freeze_startup_heap
from ioc.api.deliveries import build_deliveries_router
from ioc.api.fastpath import FastIngest
from ioc.api.ingest import answer_one, build_ingest_router
from ioc.api.inputs import storable_parameters
from ioc.api.lookup import build_lookup_router, lookup_limiter
from ioc.api.media import build_media_router
from ioc.api.ngsi_ld import build_ngsi_ld_router
from ioc.api.open311 import build_open311_router
from ioc.api.ops import build_ops_router
from ioc.api.redaction import install_log_redaction
from ioc.api.reference import build_reference_router
from ioc.api.tickets import build_tickets_router
from ioc.api.triage import build_triage_router
from ioc.api.users import build_users_router
from ioc.api.wire import WireCapture
from ioc.clock import Clock
from ioc.events.kinds import json_schemas
from ioc.platform import Platform
from ioc.settings import Settings, load_settings
from maps.lookup import build_lookup_page_router
from maps.review.routes import build_review_router
from maps.web import build_pages_router

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


# The platform's metrics are Prometheus's (ioc.metrics). FastAPI's own OpenTelemetry hooks
# (in the versions that have them) would otherwise look up the telemetry providers, through
# the environment, at every request.
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or load_settings()
    install_log_redaction()  # before the server writes its first access line
    platform = Platform(settings, working_calendar(settings), clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        try:
            await _build_routes(app)
            freeze_startup_heap()
            yield
        finally:
            await platform.stop()

    app = FastAPI(
        title="IOC event platform",
        version=__version__,
        description="Field reports, traffic counters and dossier events for a provincial "
        "operations center. Authenticate with `Authorization: Bearer <API key>`.",
        lifespan=lifespan,
        dependencies=[Depends(storable_parameters)],
        **_NO_NATIVE_TELEMETRY,
    )
    app.state.platform = platform
    install_alerting(platform)
    mqtt_setup.install(platform)  # when IOC_MQTT_URL is set
    errors.install(app)
    # Single events skip the router's walk and the dependency machinery (same handler, same
    # error handlers): see ioc.api.fastpath.
    app.add_middleware(
        FastIngest, handle=partial(answer_one, platform), handlers=app.exception_handlers
    )
    # Outermost of the app's own middleware: live frames are written past the framework's
    # send wrappers (ioc.api.wire).
    app.add_middleware(WireCapture)
    app.include_router(build_ops_router(platform))
    app.include_router(build_ingest_router(platform))
    app.include_router(build_media_router(platform))
    app.include_router(build_reference_router(platform))
    app.include_router(build_admin_router(platform))
    app.include_router(build_tickets_router(platform))
    app.include_router(build_triage_router(platform))
    app.include_router(build_users_router(platform))
    app.include_router(build_alerts_router(platform))
    app.include_router(build_deliveries_router(platform))
    app.include_router(build_open311_router(platform))
    app.include_router(build_ngsi_ld_router(platform))
    app.include_router(build_pages_router(platform))
    app.include_router(build_review_router(platform))
    lookups = lookup_limiter(settings)  # one allowance per address, page and endpoint alike
    app.include_router(build_lookup_router(platform, lookups))
    app.include_router(build_lookup_page_router(platform, lookups))
    _extend_openapi(app)
    return app


async def _build_routes(app: FastAPI) -> None:
    """Have FastAPI build its state for every route now, not on the event loop at the first
    request that reaches each router (about 170 ms in all, while other requests wait): a
    request that matches no route walks them all."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://startup") as client:
        await client.get("/.no-such-route")


def _extend_openapi(app: FastAPI) -> None:
    """Add the event schemas (from the msgspec records) and the error shape to the document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(json_schemas()[1])
            schemas["Error"] = _ERROR_SCHEMA
            errors.document(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from the environment."""
    return create_app(load_settings())
