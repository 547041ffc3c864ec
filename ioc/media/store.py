"""Where image files live: a small interface, and a folder that implements it (ioc.media.s3 is
the other implementation, an S3-compatible object store).

Files are named by the SHA-256 of their content, so the same photo uploaded twice is one file,
and a name never changes meaning. A write goes to a temporary file in the target's folder and is
renamed into place (atomic on one file system): a reader never sees half a file, and two
processes writing the same content at once both succeed with the same result.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

_NAME = re.compile(r"^[0-9a-f]{64}$")


class MediaStore(Protocol):
    """Content-addressed bytes."""

    def put(self, data: bytes) -> str:
        """Store ``data``; its name (the SHA-256, hex)."""
        ...

    def get(self, name: str) -> bytes | None:
        """The bytes stored under ``name``, or None."""
        ...

    def delete(self, name: str) -> None: ...

    def names(self, older_than_s: float) -> Iterator[str]:
        """Stored names last written more than ``older_than_s`` seconds ago."""
        ...


def object_path(name: str) -> str:
    """Where the file ``name`` lives under a store's root: ``ab/cd/abcd…``."""
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a media file name (64 hex digits)")
    return f"{name[:2]}/{name[2:4]}/{name}"


class FolderStore:
    """A folder of files ``ab/cd/abcd…`` (two levels, so no folder grows too large)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / object_path(name)

    def put(self, data: bytes) -> str:
        name = hashlib.sha256(data).hexdigest()
        path = self._path(name)
        if path.exists():
            # Refreshed, so a prune that started before this upload leaves it alone.
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)
                return name
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return name

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()

    def names(self, older_than_s: float) -> Iterator[str]:
        before = time.time() - older_than_s
        for path in self.root.glob("??/??/*"):
            if _NAME.match(path.name):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < before:
                        yield path.name
