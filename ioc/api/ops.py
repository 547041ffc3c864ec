"""Operations endpoints: liveness, readiness, metrics, and a plain status page."""

from __future__ import annotations

import html
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ioc import __version__
from ioc.auth import Role
from ioc.errors import Unauthenticated
from ioc.platform import Platform
from ioc.store import migrate

_WATCHERS = frozenset({Role.OPERATOR, Role.ADMIN})
_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def build_ops_router(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/healthz",
        summary="The process is up (with an operator or admin key: its pid and whether it leads upkeep)",
    )
    async def healthz(request: Request) -> dict[str, Any]:
        answer: dict[str, Any] = {"status": "ok", "version": __version__}
        if await may_watch(request):
            upkeep = platform.maintenance
            answer["pid"] = os.getpid()
            answer["upkeep_leader"] = upkeep is not None and upkeep.is_leader
        return answer

    @router.get("/readyz", summary="The database is reachable and its migrations are current")
    async def readyz() -> JSONResponse:
        try:
            async with platform.pool.connection(timeout=2) as conn:
                state = await migrate.status(conn)
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "database": f"unreachable ({type(exc).__name__})"},
                503,
                headers={"Retry-After": "2"},
            )
        if not state.current:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "database": "reachable",
                    "pending_migrations": state.pending,
                },
                503,
            )
        return JSONResponse(
            {
                "status": "ready",
                "database": "reachable",
                "backend": state.backend,
                "migrations": state.applied,
            }
        )

    async def watcher(request: Request) -> None:
        """Counts and metrics need an operator or admin key, unless made public by setting."""
        if not platform.settings.public_status:
            (await platform.authenticate(request)).require(_WATCHERS)

    async def may_watch(request: Request) -> bool:
        """Whether ``watcher`` would let this request through. Never an error: liveness must not
        hang on a key lookup (the database may be the thing that is down)."""
        try:
            await watcher(request)
        except Exception:  # no key, wrong role, throttled, database down: alive, less said
            return False
        return True

    @router.get(
        "/metrics",
        summary="Prometheus metrics (an operator or admin key, unless IOC_PUBLIC_STATUS)",
        response_class=Response,
        responses={code: _ERROR for code in (401, 403)},
    )
    async def metrics(request: Request) -> Response:
        await watcher(request)
        return Response(platform.metrics.render(), media_type="text/plain; version=0.0.4")

    @router.get("/", include_in_schema=False)
    async def status_page(request: Request) -> Response:
        if not platform.settings.public_status:
            try:
                await watcher(request)
            except Unauthenticated:
                return RedirectResponse("/login?next=/", status_code=303)
        async with platform.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT 'Phản ánh hiện trường (field reports)', count(*), max(received_at) FROM field_reports
                   UNION ALL SELECT 'Lưu lượng giao thông (traffic readings)', count(*), max(received_at)
                   FROM traffic_readings
                   UNION ALL SELECT 'Sự kiện hồ sơ TTHC (dossier events)', count(*), max(received_at)
                   FROM dossier_events"""
            )
            rows = await cur.fetchall()
        body = "".join(
            f"<tr><td>{html.escape(str(name))}</td><td>{count:,}</td>"
            f"<td>{html.escape(last.isoformat(timespec='seconds') if last else '—')}</td></tr>"
            for name, count, last in rows
        )
        return HTMLResponse(
            f"""<!doctype html><html lang="vi"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5"><title>IOC — trạng thái</title>
<style>body{{font-family:sans-serif;margin:2rem}}td,th{{padding:.3rem 1rem;text-align:left}}</style>
</head><body><h1>Trung tâm IOC — trạng thái nền tảng</h1>
<table><tr><th>Luồng</th><th>Số bản ghi</th><th>Nhận gần nhất</th></tr>{body}</table>
<p>Back end: {html.escape(platform.backend)} · <a href="/docs">API docs</a> ·
<a href="/metrics">metrics</a> · <a href="/readyz">readiness</a></p></body></html>"""
        )

    return router
