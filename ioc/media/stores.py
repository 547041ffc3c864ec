"""Which media store the settings name: an S3-compatible object store when IOC_MEDIA_S3_URL is
set, else the media folder."""

from __future__ import annotations

from ioc.media.store import FolderStore, MediaStore
from ioc.settings import Settings


def open_media_store(settings: Settings) -> MediaStore:
    """The store photos and previews go to (nothing is contacted yet)."""
    if settings.media_s3_url:
        from ioc.media.s3 import connect

        return connect(
            settings.media_s3_url,
            settings.media_s3_bucket,
            access_key=settings.media_s3_access_key,
            secret_key=settings.media_s3_secret_key,
            region=settings.media_s3_region,
            path_style=settings.media_s3_path_style,
            prefix=settings.media_s3_prefix,
            timeout_s=settings.media_s3_timeout_s,
            ca_file=settings.media_s3_ca_file,
        )
    return FolderStore(settings.media_dir or settings.data_dir / "media")


def describe(settings: Settings) -> str:
    """Where the store is, for people (no secret)."""
    if settings.media_s3_url:
        where = f"{settings.media_s3_url}/{settings.media_s3_bucket}/{settings.media_s3_prefix}"
        return f"S3 store {where}"
    return f"folder {settings.media_dir or settings.data_dir / 'media'}"
