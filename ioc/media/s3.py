"""The media store in an S3-compatible object store (a province's own, or a cloud's).

Objects are named like the folder's files (``ab/cd/abcd…``, the SHA-256 of the content, after an
optional prefix), so the same photo is one object and a name never changes meaning. S3 writes an
object whole or not at all, so concurrent uploads of the same content need no care of ours. The
client is MinIO's (signature v4); its calls block, so the platform runs them off the event loop
(as it does the folder's).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error

from ioc.media.store import object_path

_MISSING = frozenset({"NoSuchKey", "NoSuchObject"})


class S3Store:
    """Content-addressed bytes in one bucket."""

    def __init__(self, client: Minio, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, name: str) -> str:
        return self.prefix + object_path(name)

    def put(self, data: bytes) -> str:
        # Written again even when present: its last-modified time then moves, as the folder's
        # file time does, so a prune that started before this upload leaves it alone.
        name = hashlib.sha256(data).hexdigest()
        self.client.put_object(self.bucket, self._key(name), io.BytesIO(data), len(data))
        return name

    def get(self, name: str) -> bytes | None:
        try:
            response = self.client.get_object(self.bucket, self._key(name))
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def delete(self, name: str) -> None:
        self.client.remove_object(self.bucket, self._key(name))  # no error when absent

    def names(self, older_than_s: float) -> Iterator[str]:
        before = datetime.now(UTC) - timedelta(seconds=older_than_s)
        for found in self.client.list_objects(self.bucket, prefix=self.prefix, recursive=True):
            key = found.object_name or ""
            name = key.rsplit("/", 1)[-1]
            if found.is_dir or key != self._key_or_none(name):
                continue
            if found.last_modified is not None and found.last_modified < before:
                yield name

    def _key_or_none(self, name: str) -> str | None:
        try:
            return self._key(name)
        except ValueError:
            return None

    def check(self) -> str:
        """Raise unless the bucket answers; a line saying what was reached."""
        if not self.client.bucket_exists(self.bucket):
            raise LookupError(f"the bucket {self.bucket!r} does not exist in the S3 store")
        return f"bucket {self.bucket!r} answers"


def connect(
    url: str,
    bucket: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    path_style: bool = True,
    prefix: str = "",
    timeout_s: float = 30.0,
    ca_file: Path | None = None,
) -> S3Store:
    """A store on the endpoint ``url`` (http(s)://host[:port]); https is checked against
    ``ca_file``, else SSL_CERT_FILE, else the certifi bundle."""
    parts = urlsplit(url)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=str(ca_file) if ca_file else os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    client = Minio(
        parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region=region,
        http_client=http,
    )
    if path_style:
        client.disable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
    else:
        client.enable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
    return S3Store(client, bucket, prefix)
