"""Taking photos in: check every part, store the files, then record them in one transaction.

Every part of a request is checked before anything is stored, so one bad part refuses the
request whole. Files go to the media store first and rows after: a row never names a missing
file, and a file without a row (a crash in between) is removed by ``ioc media prune``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ioc.auth import INGEST_ROLES, Principal
from ioc.clock import Clock
from ioc.errors import InvalidInput, NotFound, PayloadTooLarge
from ioc.media import records
from ioc.media.images import Photo, prepare
from ioc.media.records import File, Media
from ioc.media.store import MediaStore


@dataclass(frozen=True)
class Part:
    """One uploaded file: the form field it came in (named in errors) and its bytes."""

    field: str
    data: bytes


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    per_request: int
    preview_px: int


class MediaDesk:
    """Accepts uploads and hands out stored files to those who may see them."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], store: MediaStore, limits: Limits, clock: Clock
    ) -> None:
        self._pool = pool
        self.store = store
        self.limits = limits
        self._clock = clock

    def check_count(self, count: int) -> None:
        if count > self.limits.per_request:
            reason = f"{count} images; at most {self.limits.per_request} are accepted at once"
            raise InvalidInput(f"media: {reason}", [{"field": "media", "reason": reason}])

    def check_size(self, field: str, size: int) -> None:
        if size > self.limits.max_bytes:
            reason = f"the image is {size} bytes; at most {self.limits.max_bytes} are accepted"
            raise PayloadTooLarge(f"{field}: {reason}", [{"field": field, "reason": reason}])

    async def accept(self, parts: Sequence[Part], who: Principal) -> list[Media]:
        """Check, store and record uploads (not linked to a report yet)."""
        who.require(INGEST_ROLES)
        self.check_count(len(parts))
        for part in parts:
            self.check_size(part.field, len(part.data))
        photos: list[Photo] = []
        for part in parts:
            photos.append(
                await asyncio.to_thread(
                    prepare,
                    part.data,
                    part.field,
                    self.limits.max_pixels,
                    self.limits.preview_px,
                )
            )
        previews = []
        for photo in photos:
            await asyncio.to_thread(self.store.put, photo.data)
            previews.append(await asyncio.to_thread(self.store.put, photo.preview))
        now = self._clock.now()
        async with self._pool.connection() as conn, conn.transaction():
            return [
                await records.insert(conn, photo, preview, who, now)
                for photo, preview in zip(photos, previews, strict=True)
            ]

    async def forget(self, media: Sequence[Media]) -> None:
        """Drop rows of uploads whose report was not stored (their files wait for prune)."""
        async with self._pool.connection() as conn:
            await records.forget(conn, [m.id for m in media])

    async def file(self, who: Principal, media_id: str, preview: bool) -> tuple[bytes, File]:
        """The bytes of a photo or its preview the caller may see, and what they are."""
        async with self._pool.connection() as conn:
            found = await records.file_for(conn, who, media_id, preview)
        data = await asyncio.to_thread(self.store.get, found.name)
        if data is None:
            raise NotFound(f"media {media_id!r} is recorded but its file is missing")
        return data, found
