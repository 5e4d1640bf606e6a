"""Draw the app's PNG icons with the standard library only.

Run `python -m fernd.web.make_icons` after changing the drawing, and commit
the PNG files it writes to `static/icons/`. The drawing matches
`static/icons/icon.svg`: a white leaf on the theme colour. The PNGs fill the
whole square, so platforms that cut icons to a circle or a rounded square
(maskable icons) keep the leaf, which stays inside the central 80 %.
"""

import math
import struct
import zlib
from pathlib import Path

# The theme colour of the manifest and the page, as RGB.
BACKGROUND = (0x2F, 0x6F, 0x5E)
LEAF = (0xFF, 0xFF, 0xFF)
SIZES = (192, 512)
# Samples per pixel along each axis, so 4 gives 16 samples for smooth edges.
SUPERSAMPLING = 4

# The leaf, in units of the icon's width, on axes rotated by 45 degrees: u
# runs along the leaf towards the upper right, v across it. The blade is the
# overlap of two circles of radius LEAF_RADIUS whose centres sit
# LEAF_CENTRE_OFFSET either side of the axis: 0.62 long, 0.32 wide.
LEAF_RADIUS = 0.3803
LEAF_CENTRE_OFFSET = 0.2203
LEAF_SHIFT = 0.04
STEM_END = -0.40
STEM_HALF_WIDTH = 0.02
VEIN_HALF_WIDTH = 0.012
VEIN_END = 0.20


def _colour_at(x: float, y: float) -> tuple[int, int, int]:
    dx, dy = x - 0.5, y - 0.5
    u = (dx - dy) / math.sqrt(2) - LEAF_SHIFT
    v = (dx + dy) / math.sqrt(2)
    blade = (
        u * u + (v - LEAF_CENTRE_OFFSET) ** 2 <= LEAF_RADIUS**2
        and u * u + (v + LEAF_CENTRE_OFFSET) ** 2 <= LEAF_RADIUS**2
    )
    blade_base = -math.sqrt(LEAF_RADIUS**2 - LEAF_CENTRE_OFFSET**2)
    if blade and abs(v) <= VEIN_HALF_WIDTH and blade_base < u < VEIN_END:
        return BACKGROUND
    if blade:
        return LEAF
    if STEM_END <= u <= blade_base + 0.01 and abs(v) <= STEM_HALF_WIDTH:
        return LEAF
    return BACKGROUND


def draw(size: int) -> bytes:
    """Return the icon as rows of RGB bytes, each row led by PNG filter 0."""
    rows = bytearray()
    samples = SUPERSAMPLING * SUPERSAMPLING
    for row in range(size):
        rows.append(0)
        for column in range(size):
            red = green = blue = 0
            for sy in range(SUPERSAMPLING):
                for sx in range(SUPERSAMPLING):
                    x = (column + (sx + 0.5) / SUPERSAMPLING) / size
                    y = (row + (sy + 0.5) / SUPERSAMPLING) / size
                    r, g, b = _colour_at(x, y)
                    red += r
                    green += g
                    blue += b
            rows += bytes(
                (
                    round(red / samples),
                    round(green / samples),
                    round(blue / samples),
                )
            )
    return bytes(rows)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(size: int, rows: bytes) -> bytes:
    """Encode filtered RGB rows of a square image as a PNG file."""
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


def main() -> None:
    directory = Path(__file__).parent / "static" / "icons"
    for size in SIZES:
        path = directory / f"icon-{size}.png"
        path.write_bytes(encode_png(size, draw(size)))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
