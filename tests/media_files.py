"""Images made for the tests with Pillow (nothing real): with or without EXIF GPS, any format."""

from __future__ import annotations

import io

import pillow_heif
from PIL import Image, ImageDraw

pillow_heif.register_heif_opener()

# Where the test photos say they were taken: Huế, 16°27'49.32"N 107°35'25.8"E.
GPS_LAT = 16 + 27 / 60 + 49.32 / 3600
GPS_LON = 107 + 35 / 60 + 25.8 / 3600


def picture(
    fmt: str = "JPEG",
    size: tuple[int, int] = (1200, 800),
    gps: bool = False,
    colour: str = "#2e7d32",
) -> bytes:
    """A drawn picture in ``fmt``; with ``gps``, EXIF holding a position and a camera name."""
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill="white")
    draw.ellipse((size[0] // 2, size[1] // 2, size[0] - 10, size[1] - 10), fill="#c62828")
    exif = Image.Exif()
    exif[0x010F] = "Test Camera Maker"  # Make
    exif[0x0131] = "secret-software"  # Software
    if gps:
        exif[0x8825] = {
            1: "N",
            2: (16.0, 27.0, 49.32),
            3: "E",
            4: (107.0, 35.0, 25.8),
        }
    out = io.BytesIO()
    image.save(out, fmt, exif=exif.tobytes())
    return out.getvalue()
