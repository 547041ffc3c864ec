"""Photo endpoints: upload first (POST /v1/media), fetch a photo or its preview, and a field
report posted with its photos (multipart on POST /v1/events and Open311's POST requests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from ioc.api.uploads import is_multipart, read_form
from ioc.auth import Principal
from ioc.errors import InvalidInput, UnsupportedMediaType
from ioc.events.intake import Receipt
from ioc.events.kinds import FieldReport
from ioc.events.validation import decode_one
from ioc.media.records import Media
from ioc.media.uploads import Part
from ioc.platform import Platform

_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_MediaId = Annotated[str, Path(max_length=64, description="the id the upload answered with")]
_MOST_PER_REPORT = 20  # FieldReport.media_ids holds at most this many
# A media id's bytes never change (the file is named by its content): cache for long, but only
# in the caller's own cache, since only some roles may see it.
_CACHING = "private, max-age=31536000, immutable"


def _images(most: int) -> dict[str, Any]:
    return {"type": "array", "maxItems": most, "items": {"type": "string", "format": "binary"}}


def report_with_media_body(event_schema: dict[str, Any], most: int) -> dict[str, Any]:
    """The document's multipart body of POST /v1/events: the report's JSON and its photos."""
    return {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["event"],
                "properties": {
                    "event": {**event_schema, "description": "the field report (JSON)"},
                    "media": _images(most),
                },
            },
            "encoding": {"event": {"contentType": "application/json"}},
        }
    }


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status, media_type="application/json")


async def report_with_media(
    platform: Platform, request: Request, who: Principal
) -> tuple[FieldReport, Receipt, list[Media]]:
    """Store a field report sent as a form: its JSON in the part ``event``, images in any other
    file part. The images are linked only if the report is stored; (report, its receipt, its
    new photos)."""
    form = await read_form(request, platform.media.limits, text_parts=("event",))
    text = form.fields.get("event")
    if text is None:
        reason = "the report's JSON is missing: send it in the form field 'event'"
        raise InvalidInput(f"event: {reason}", [{"field": "event", "reason": reason}])
    event = decode_one(text.encode())
    if not isinstance(event, FieldReport):
        reason = "only a field report can carry photos"
        raise InvalidInput(f"event: {reason}", [{"field": "event", "reason": reason}])
    return (event, *await submit_with_media(platform, event, form.files, who))


async def submit_with_media(
    platform: Platform, event: FieldReport, files: Sequence[Part], who: Principal
) -> tuple[Receipt, list[Media]]:
    """Upload ``files``, then submit the report naming them; a refused or repeated report
    leaves no rows behind (its files wait for ``ioc media prune``)."""
    if len(event.media_ids) + len(files) > _MOST_PER_REPORT:
        reason = f"{len(event.media_ids) + len(files)} photos; a report holds at most 20"
        raise InvalidInput(f"media: {reason}", [{"field": "media", "reason": reason}])
    uploaded = await platform.media.accept(files, who) if files else []
    ids = event.media_ids + tuple(m.id for m in uploaded)
    event = msgspec.structs.replace(event, media_ids=ids)
    try:
        receipt = await platform.intake.submit(event, who)
    except Exception:  # (a cancelled request's rows stay unlinked, for prune)
        await platform.media.forget(uploaded)
        raise
    if not receipt.stored:
        await platform.media.forget(uploaded)
        return receipt, []
    return receipt, uploaded


def build_media_router(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/v1/media", tags=["media"])

    @router.post(
        "",
        status_code=201,
        summary="Upload photos first; a later field report names them in media_ids",
        description="multipart/form-data, each image a file part (JPEG, PNG, WebP or HEIC, "
        "checked by content). The answer lists each photo's id, in the order sent.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"media": _images(platform.settings.media_per_report)},
                        }
                    }
                },
            }
        },
        responses={
            201: {"description": '{"media": [{"id", "url", "preview_url", ...}]}'},
            **{code: _ERROR for code in (400, 401, 403, 413, 415, 422, 503)},
        },
    )
    async def upload(request: Request) -> Response:
        who = await platform.authenticate(request)
        if not is_multipart(request):
            raise UnsupportedMediaType("send images as multipart/form-data")
        form = await read_form(request, platform.media.limits)
        if not form.files:
            reason = "no image in the form: send each as a file part"
            raise InvalidInput(reason, [{"field": "media", "reason": reason}])
        return _json({"media": await platform.media.accept(form.files, who)}, 201)

    async def send(request: Request, media_id: str, preview: bool) -> Response:
        who = await platform.authenticate(request)
        data, found = await platform.media.file(who, media_id, preview)
        headers = {
            "Cache-Control": _CACHING,
            "ETag": f'"{found.name}"',
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(data, 200, headers, media_type=found.content_type)

    _served: dict[int | str, dict[str, Any]] = {
        200: {"description": "the image", "content": {"image/*": {}}},
        304: {"description": "not modified (If-None-Match)"},
        **{code: _ERROR for code in (401, 403, 404, 422, 503)},
    }

    @router.get(
        "/{media_id}", summary="A photo (as stored: re-encoded, no EXIF)", responses=_served
    )
    async def photo(request: Request, media_id: _MediaId) -> Response:
        return await send(request, media_id, preview=False)

    @router.get("/{media_id}/preview", summary="A photo's preview (JPEG)", responses=_served)
    async def preview(request: Request, media_id: _MediaId) -> Response:
        return await send(request, media_id, preview=True)

    return router
