"""The S3 media store's settings, declared apart (``ioc.settings.Settings`` takes them in, with
its ``IOC_`` prefix) so the settings module stays readable."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator


class MediaS3Settings(BaseModel):
    """IOC_MEDIA_S3_…: an S3-compatible object store for photos instead of the media folder."""

    media_s3_url: str | None = Field(
        default=None,
        description="Photos in an S3-compatible object store: its endpoint, e.g. https://s3.example.gov.vn or http://s3.internal:9000 (no path). Unset: the media folder (IOC_MEDIA_DIR).",
    )
    media_s3_bucket: str = Field(
        default="ioc-media",
        min_length=3,
        max_length=63,
        description="S3 media store: the bucket (it must exist; the platform does not create it).",
    )
    media_s3_prefix: str = Field(
        default="",
        description="S3 media store: a prefix before every object name (e.g. ioc/), to share a bucket.",
    )
    media_s3_access_key: str = Field(default="", description="S3 media store: the access key.")
    media_s3_secret_key: str = Field(default="", description="S3 media store: the secret key.")
    media_s3_region: str = Field(
        default="us-east-1",
        description="S3 media store: the region requests are signed for (signature v4); most stores of one site accept us-east-1.",
    )
    media_s3_path_style: bool = Field(
        default=True,
        description="S3 media store: address the bucket in the path (http://host/bucket/name), as most on-premises stores expect; off: as a host name (http://bucket.host/name).",
    )
    media_s3_ca_file: Path | None = Field(
        default=None,
        description="S3 media store over https: CA certificates to check the store with (e.g. the province's own CA). Unset: SSL_CERT_FILE, else the certifi bundle.",
    )
    media_s3_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="S3 media store: longest wait for one answer; a request is retried up to three times (after a connection error or a 5xx) before it fails.",
    )

    @field_validator("media_s3_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http(s)://host[:port], e.g. https://s3.example.gov.vn")
        if parts.path not in ("", "/") or parts.query or parts.username:
            raise ValueError(
                "the endpoint only (no path, query or credentials): the bucket and keys have their own settings"
            )
        return value.rstrip("/")
