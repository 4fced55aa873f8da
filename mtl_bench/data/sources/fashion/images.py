"""Pixels of the Fashion Product Images source: decode a catalogue photo, square it, and film it.

Photos are padded to a square on white, not cropped: the catalogue shoots products on white, mostly in 3:4
portrait (225 x 300), and a centre crop would cut the top and bottom off dresses, shoes and watch straps. The square
is then resized (antialiased bicubic) to ``image_size``.

Video clips are camera motions over the square photo, in the spirit of ``builtin/render.py``'s video cameras: each
frame is a crop box of the photo resized to ``image_size``. Zoom-in shrinks the box (the product grows), zoom-out
grows it, pan-left moves the box left (the product drifts right), pan-right the other way. As in
``builtin/render.py``, the mid-clip state is random and a clip and its time reversal are equally likely, so only the
order of frames tells zoom-in from zoom-out and pan-left from pan-right.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MOTIONS = ["pan-left", "pan-right", "zoom-in", "zoom-out"]
WHITE = (255, 255, 255)
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def decode_square(data: bytes, image_size: int) -> Image.Image | None:
    """The photo as an RGB square padded on white, or None when the bytes are not a readable image.

    JPEG decoding may use libjpeg's reduced-size mode (``draft``) while the result stays at least 3x
    ``image_size``, which keeps zoomed video frames sharp and decoding fast.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (3 * image_size, 3 * image_size))
            img.load()  # a truncated or corrupt file fails here, not later
            if img.mode in ("RGBA", "LA", "P"):
                rgba = img.convert("RGBA")
                img = Image.new("RGB", rgba.size, WHITE)
                img.paste(rgba, mask=rgba.getchannel("A"))
            else:
                img = img.convert("RGB")
    except _DECODE_ERRORS:
        return None
    if min(img.size) < 1:
        return None
    side = max(img.size)
    square = Image.new("RGB", (side, side), WHITE)
    square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return square


def still(square: Image.Image, image_size: int) -> np.ndarray:
    """The whole square photo as uint8 [S, S, 3]."""
    return np.asarray(square.resize((image_size, image_size), Image.Resampling.BICUBIC), dtype=np.uint8)


def camera_path(motion: str, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Crop boxes [T, 4] (x0, y0, x1, y1) as fractions of the photo side, always inside the photo.

    Zoom: the box side follows mid * exp(-/+ d * ramp), ramp from -1 to 1 (mid in [0.6, 0.8], d in [0.12, 0.2]), so
    the largest box is under 0.98 of the photo. Pan: a fixed box side in [0.6, 0.75] whose centre moves over 50-90% of
    the free width, around a random mid point.
    """
    ramp = np.linspace(-1.0, 1.0, num_frames)
    if motion in ("zoom-in", "zoom-out"):
        sign = 1.0 if motion == "zoom-in" else -1.0
        side = rng.uniform(0.6, 0.8) * np.exp(-sign * rng.uniform(0.12, 0.2) * ramp)
        free = 1.0 - side.max()
        cx = np.full(num_frames, 0.5 + rng.uniform(-0.5, 0.5) * free)
        cy = np.full(num_frames, 0.5 + rng.uniform(-0.5, 0.5) * free)
    elif motion in ("pan-left", "pan-right"):
        sign = 1.0 if motion == "pan-left" else -1.0
        side = np.full(num_frames, rng.uniform(0.6, 0.75))
        free = 1.0 - side[0]  # room for the box centre to move
        span = rng.uniform(0.5, 0.9) * free
        cx = 0.5 + rng.uniform(-0.5, 0.5) * (free - span) - sign * span / 2 * ramp
        cy = np.full(num_frames, 0.5)
    else:
        raise ValueError(f"unknown motion {motion!r}; expected one of {MOTIONS}")
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def clip(square: Image.Image, boxes: np.ndarray, image_size: int) -> np.ndarray:
    """The frames [T, S, S, 3] uint8 seen through the crop boxes (fractions of the side; see ``camera_path``)."""
    side = square.width
    frames = [
        square.resize((image_size, image_size), Image.Resampling.BILINEAR, box=tuple(float(v) * side for v in box))
        for box in np.clip(boxes, 0.0, 1.0)
    ]
    return np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
