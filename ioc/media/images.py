"""Checking an uploaded image by its content, and making what is stored from it.

Only JPEG, PNG, WebP and HEIC/HEIF pass, whatever the file's name or declared type: Pillow is
asked to read the bytes with those decoders alone. The size an image declares is checked before
any pixel is decoded (a few kilobytes can declare gigapixels). The stored image is re-encoded
from its pixels, so no metadata survives but the colour profile; the EXIF GPS position is read
first and kept as data. HEIC is stored as JPEG (browsers do not show HEIC). Decoding costs tens
of milliseconds per photo: callers run this in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Final

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from ioc.errors import InvalidInput

pillow_heif.register_heif_opener()

# Pillow's name for each accepted format, and what is stored for it.
ACCEPTED: Final = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "HEIF": "JPEG"}
CONTENT_TYPES: Final = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
PREVIEW_TYPE: Final = "image/jpeg"
_GPS_IFD = 0x8825
_QUALITY = 88


@dataclass(frozen=True)
class Photo:
    """An image as stored: re-encoded without metadata, its preview, and where it was taken."""

    data: bytes
    content_type: str
    width: int
    height: int
    preview: bytes
    lon: float | None
    lat: float | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def refused(part: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{part}: {reason}", [{"field": part, "reason": reason}])


def prepare(data: bytes, part: str, max_pixels: int, preview_px: int) -> Photo:
    """The photo to store from an upload's bytes; InvalidInput naming ``part`` if refused."""
    try:
        image = Image.open(io.BytesIO(data), formats=tuple(ACCEPTED))
    except UnidentifiedImageError:
        raise refused(
            part, "is not an image of an accepted kind (JPEG, PNG, WebP or HEIC), by its content"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise refused(part, f"the image cannot be read: {exc}") from None
    with image:
        icc = image.info.get("icc_profile")
        width, height = image.size
        if width * height > max_pixels:
            raise refused(
                part,
                f"the image declares {width}×{height} pixels ({width * height}); "
                f"at most {max_pixels} are accepted",
            )
        kind = ACCEPTED[str(image.format)]
        lon, lat = gps_position(image.getexif())
        try:
            upright = ImageOps.exif_transpose(image)  # decodes; the turn is kept, not the tag
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise refused(part, f"the image cannot be decoded: {exc}") from None
    stored = _encode(upright, kind, icc)
    return Photo(
        data=stored,
        content_type=CONTENT_TYPES[kind],
        width=upright.width,
        height=upright.height,
        preview=_preview(upright, preview_px),
        lon=lon,
        lat=lat,
    )


def _encode(image: Image.Image, kind: str, icc: Any) -> bytes:
    """The pixels in ``kind``, with nothing of the original's metadata but its colour profile."""
    if kind == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif kind == "WEBP" and image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    image.info = {}  # what a save could carry over (EXIF, XMP, text chunks, comments)
    out = io.BytesIO()
    options: dict[str, Any] = {"icc_profile": icc} if isinstance(icc, bytes) else {}
    if kind in ("JPEG", "WEBP"):
        options["quality"] = _QUALITY
    image.save(out, kind, **options)
    return out.getvalue()


def _preview(image: Image.Image, longest: int) -> bytes:
    small = image.copy()
    small.thumbnail((longest, longest))
    if small.mode in ("RGBA", "LA", "PA") or (small.mode == "P" and "transparency" in small.info):
        small = small.convert("RGBA")
        backed = Image.new("RGB", small.size, "white")
        backed.paste(small, mask=small.getchannel("A"))
        small = backed
    elif small.mode not in ("RGB", "L"):
        small = small.convert("RGB")
    small.info = {}
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()


def _degrees(value: Any) -> float | None:
    try:
        d, m, s = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return d + m / 60 + s / 3600


def gps_position(exif: Image.Exif) -> tuple[float | None, float | None]:
    """(lon, lat) from EXIF GPS tags, or (None, None) when absent or not a real position."""
    try:
        gps = exif.get_ifd(_GPS_IFD)
    except (KeyError, ValueError, TypeError, OSError):
        return None, None
    lat, lon = _degrees(gps.get(2)), _degrees(gps.get(4))
    if lat is None or lon is None:
        return None, None
    if str(gps.get(1, "N")).upper().startswith("S"):
        lat = -lat
    if str(gps.get(3, "E")).upper().startswith("W"):
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None, None
    return round(lon, 7), round(lat, 7)
