"""Routes of the leaders' review: the page, each table as CSV, and all of it as JSON.

Leaders and admins only. The page takes the login cookie (or a bearer key) like the other
pages: without a valid key it sends the browser to /login, with another role it answers 403.
The CSV and JSON routes answer in the API's error shape.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import quote

import msgspec
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alerting.calendar import WorkingCalendar
from alerting.setup import office_hours
from ioc.auth import Principal, Role
from ioc.errors import Forbidden, InvalidInput, Unauthenticated
from ioc.params import query_of
from ioc.platform import Platform
from maps import pages
from maps.review import period as review_period
from maps.review import queries as review_queries
from maps.review import rollups as review_rollups
from maps.review import table as review_table
from maps.review.page import REVIEW_PATH, ReviewView, render_review, table_csv

REVIEWERS: Final = frozenset({Role.LEADER, Role.ADMIN})
_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_Since = Annotated[
    str | None,
    Query(
        pattern=_MONTH,
        description="first month, YYYY-MM (default: two months ago; when the last three "
        "months have no data, the three months ending with the latest month that has)",
    ),
]
_Until = Annotated[
    str | None,
    Query(
        pattern=_MONTH, description="last month, YYYY-MM (default: this month); at most 120 months"
    ),
]
_Agency = Annotated[str | None, Query(description="only this agency (code)")]
_Category = Annotated[str | None, Query(description="only tickets of this category (code)")]


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        text, status, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    )


class _Review:
    """Reads one review for a request: checks the caller, parses the period, runs the tables."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def day_s(self) -> float:
        """Office seconds in a working day (dossier processing times are shown in days)."""
        office = self.platform.office
        if isinstance(office, WorkingCalendar):
            return office.seconds_per_day
        return WorkingCalendar(
            office_hours=office_hours(self.platform.settings.office_hours), country=None
        ).seconds_per_day

    async def read(
        self, request: Request, wanted: tuple[str, ...]
    ) -> tuple[review_period.ReviewQuery, review_queries.Names, list[review_table.Table], datetime]:
        settings = self.platform.settings
        now = self.platform.clock.now()
        async with self.platform.pool.connection() as conn:
            names = await review_queries.load_names(conn)
            query = review_period.parse_query(
                query_of(request.query_params.multi_items()),
                settings.zone,
                now.astimezone(settings.zone).date(),
                list(names.agencies),
                list(names.categories),
            )
            await review_rollups.refresh(conn, settings.timezone)
            query = await review_period.settle_period(conn, query, settings.timezone)
            tables = [
                await review_queries.build_table(conn, name, query, now, self.day_s(), names)
                for name in wanted
            ]
        return query, names, tables, now


def build_review_router(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["review"])
    reader = _Review(platform)

    async def reviewer(request: Request) -> Principal:
        who = await platform.authenticate(request)
        who.require(REVIEWERS)
        return who

    @router.get(REVIEW_PATH, include_in_schema=False)
    async def review_page(request: Request) -> Response:
        try:
            who = await reviewer(request)
        except Unauthenticated:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
        except Forbidden as exc:
            return _html(pages.error_page(403, exc.message), 403)
        label = who.label or who.role.value
        try:
            query, names, tables, now = await reader.read(request, review_queries.TABLES)
            error, status = "", 200
        except InvalidInput as exc:
            # Show the form again (with the default period) and say what was wrong.
            async with platform.pool.connection() as conn:
                names = await review_queries.load_names(conn)
            today = platform.clock.now().astimezone(platform.settings.zone).date()
            query = review_period.parse_query({}, platform.settings.zone, today, [], [])
            tables, now, error, status = [], platform.clock.now(), exc.message, 422
        view = ReviewView(
            query=query,
            tables=tables,
            agencies=names.agencies,
            categories=names.categories,
            generated=f"{now.astimezone(platform.settings.zone):%H:%M %d/%m/%Y}",
            who=label,
            error=error,
        )
        return _html(await asyncio.to_thread(render_review, view), status)

    @router.get(
        REVIEW_PATH + "/{table}.csv",
        summary="One table of the leaders' review as CSV (column keys as the header row)",
        responses={
            200: {"description": "text/csv", "content": {"text/csv": {}}},
            **{code: _ERROR for code in (401, 403, 404, 422, 503)},
        },
    )
    async def review_csv(
        request: Request,
        table: Annotated[
            str,
            Path(
                description="a table of the review",
                json_schema_extra={"enum": list(review_queries.TABLES)},
            ),
        ],
        since: _Since = None,
        until: _Until = None,
        agency: _Agency = None,
        category: _Category = None,
    ) -> Response:
        await reviewer(request)
        if table not in review_queries.TABLES:
            raise InvalidInput(
                f"table: {table!r} is not a table of the review; known: {', '.join(review_queries.TABLES)}",
                [{"field": "table", "reason": "unknown table"}],
            )
        query, _, (found,), _ = await reader.read(request, (table,))
        name = f"review-{table}-{query.first_month:%Y-%m}-{query.last_month:%Y-%m}.csv"
        return Response(
            # A byte-order mark, so spreadsheet programs read the Vietnamese names as UTF-8.
            "\ufeff" + table_csv(found),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    @router.get(
        "/v1/review",
        summary="The leaders' review as JSON: every table, with its columns and rows",
        responses={code: _ERROR for code in (401, 403, 422, 503)},
    )
    async def review_json(
        request: Request,
        since: _Since = None,
        until: _Until = None,
        agency: _Agency = None,
        category: _Category = None,
    ) -> Response:
        await reviewer(request)
        query, _, tables, now = await reader.read(request, review_queries.TABLES)
        body: dict[str, Any] = {
            "period": {
                "since": f"{query.first_month:%Y-%m}",
                "until": f"{query.last_month:%Y-%m}",
                "from": query.since,
                "to": query.until,
                "agency": query.agency,
                "category": query.category,
                "note": query.note,
            },
            "generated_at": now,
            "tables": {t.name: t.as_dict() for t in tables},
        }
        return Response(
            msgspec.json.encode(body),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return router
