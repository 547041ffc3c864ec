"""Photos for the demo: drawn with Pillow for a simulated report (never a real photo), and
posted with it as multipart/form-data, as a citizen's app would.

About one field report in three gets one. The picture is a plain street scene in the category's
colour, captioned as simulated, with the report's position in its EXIF GPS tags, so the console
shows the photo and the media record its place.
"""

from __future__ import annotations

import io
import json
import random
import zlib
from typing import Any

import httpx
from PIL import Image, ImageDraw

_SHARE = 3  # one report in this many carries a photo
_COLOURS = {
    "moi_truong": "#6d8b3a",
    "giao_thong": "#5b6770",
    "xay_dung": "#a0764a",
    "trat_tu_do_thi": "#8a5a83",
    "chieu_sang": "#c9a227",
    "cap_thoat_nuoc": "#3a7ca5",
    "cay_xanh": "#2e7d32",
    "ha_tang": "#8d8d8d",
}


def wants_photo(event: dict[str, Any]) -> bool:
    """Whether the demo posts this report with a photo (fixed per report id)."""
    if event.get("kind") != "field_report":
        return False
    return zlib.crc32(str(event.get("external_id")).encode()) % _SHARE == 0


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 2)


def draw_photo(event: dict[str, Any]) -> bytes:
    """A 960×720 JPEG for the report: ground, sky, a few shapes, a caption, EXIF GPS."""
    rng = random.Random(str(event.get("external_id")))
    image = Image.new("RGB", (960, 720), "#b9d4ea")
    draw = ImageDraw.Draw(image)
    ground = _COLOURS.get(str(event.get("category")), "#7a7a7a")
    draw.rectangle((0, 400, 960, 720), fill=ground)
    draw.polygon([(380, 720), (580, 720), (500, 400), (460, 400)], fill="#4a4a4a")  # a road
    for _ in range(rng.randint(3, 7)):
        x, y, size = rng.randint(20, 900), rng.randint(380, 660), rng.randint(30, 110)
        colour = rng.choice(["#2f2f2f", "#d9d9d9", "#8b4513", "#c62828", "#1b5e20"])
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + size, y + size * 0.7), fill=colour)
    draw.rectangle((0, 0, 960, 44), fill="#000000")
    caption = f"ANH MO PHONG (IOC demo) - {event.get('external_id')} - {event.get('category')}"
    draw.text((14, 14), caption, fill="#ffffff")
    exif = Image.Exif()
    lon, lat = float(event["lon"]), float(event["lat"])
    exif[0x8825] = {
        1: "N" if lat >= 0 else "S",
        2: _dms(lat),
        3: "E" if lon >= 0 else "W",
        4: _dms(lon),
    }
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, exif=exif.tobytes())
    return out.getvalue()


async def post_with_photo(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    """POST /v1/events with the report's JSON and its drawn photo."""
    name = f"{event.get('external_id')}.jpg"
    return await client.post(
        "/v1/events",
        files=[
            ("event", (None, json.dumps(event), "application/json")),
            ("media", (name, draw_photo(event), "image/jpeg")),
        ],
    )
