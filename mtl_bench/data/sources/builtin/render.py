"""Numpy renderer for the shop data: product silhouettes with a colour and a pattern on a cluttered background.

Everything is drawn analytically per output pixel: each pixel is mapped through its frame's camera (scale, offset,
rotation) into world coordinates, where the product sits at the origin (object units, roughly [-1, 1]) in front of
background clutter. A moving camera therefore moves product and background together, so videos look like one scene
filmed with zoom, pan or rotation, and a still image is just a one-frame "video". All maths is vectorised over
(items, frames, height, width); the only randomness is drawn from the generator passed in, so output is deterministic.
The camera paths of still photos and video clips, and the video events (flash, occlusion), are sampled here too.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SHAPES = ["top", "trousers", "dress", "shoe", "bag", "hat"]
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]
PATTERNS = ["plain", "striped", "dotted", "checked"]
CLUTTER_LEVELS = ["plain", "textured", "busy"]
MOTIONS = ["zoom-in", "zoom-out", "pan-left", "pan-right", "rotate"]  # camera motions of video clips
EVENTS = ["flash", "occlusion"]
EVENT_PROBABILITY = {"flash": 0.25, "occlusion": 0.25}  # each drawn independently per clip

# Base RGB of each colour; every product jitters it a little so colour is a region, not a single point.
COLOUR_RGB = np.array(
    [[200, 35, 35], [40, 155, 60], [40, 70, 205], [235, 205, 40], [30, 30, 32], [242, 242, 238], [240, 130, 30],
     [130, 50, 170]], dtype=np.float32,
)  # fmt: skip

_CLUTTER_SLOTS = 8  # most clutter primitives one background can hold
_CLUTTER_COUNT = np.array([0, 3, _CLUTTER_SLOTS])  # primitives per clutter level
_CLUTTER_ALPHA = np.array([0.0, 0.45, 0.9], dtype=np.float32)  # opacity of those primitives per level
_NOISE_SIGMA = np.array([3.0, 7.0, 12.0], dtype=np.float32)  # sensor noise per clutter level
_CHUNK_PIXELS = 2**17  # pixels rendered at once (items x frames x H x W); bounds memory, stays in cache


class Products(NamedTuple):
    """Latent visual attributes of N products, one int array each (indices into the lists above)."""

    shape: np.ndarray
    colour: np.ndarray
    pattern: np.ndarray
    clutter: np.ndarray


class Views(NamedTuple):
    """Camera per item and frame, each [N, T]: object scale (image half-widths per object unit), centre, rotation."""

    scale: np.ndarray
    offset_x: np.ndarray
    offset_y: np.ndarray
    angle: np.ndarray


def _rect(x: np.ndarray, y: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _trapezoid(x: np.ndarray, y: np.ndarray, y0: float, y1: float, half0: float, half1: float) -> np.ndarray:
    """Symmetric about x=0, half-width going linearly from half0 at y0 to half1 at y1."""
    half = half0 + (half1 - half0) * (y - y0) / (y1 - y0)
    return (y >= y0) & (y <= y1) & (np.abs(x) <= half)


def shape_mask(shape: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Silhouette of one shape at object coordinates (x right, y down); distinct outlines even at 32x32 pixels."""
    name = SHAPES[shape]
    if name == "top":  # T-shape with sleeves and a neck cut-out
        body = _rect(x, y, -0.45, 0.45, -0.55, 0.85)
        sleeves = _rect(np.abs(x), y, 0.45, 0.9, -0.55, -0.1)
        return (body | sleeves) & ~_ellipse(x, y, 0.0, -0.55, 0.2, 0.14)
    if name == "trousers":  # waistband and two legs with a gap
        return _rect(x, y, -0.52, 0.52, -0.9, -0.55) | _rect(np.abs(x), y, 0.07, 0.52, -0.55, 0.9)
    if name == "dress":  # narrow bodice, straps, flared skirt
        bodice = _rect(x, y, -0.22, 0.22, -0.7, -0.2)
        straps = _rect(np.abs(x), y, 0.1, 0.18, -0.9, -0.7)
        return bodice | straps | _trapezoid(x, y, -0.2, 0.9, 0.22, 0.8)
    if name == "shoe":  # side view: sole, toe cap, ankle
        upper = _ellipse(x, y, 0.2, 0.3, 0.65, 0.38) & (y <= 0.3)
        return _rect(x, y, -0.85, 0.85, 0.3, 0.5) | upper | _rect(x, y, -0.85, -0.3, -0.45, 0.3)
    if name == "bag":  # trapezoid body with a ring handle on top
        ring = _ellipse(x, y, 0.0, -0.15, 0.5, 0.55) & ~_ellipse(x, y, 0.0, -0.15, 0.36, 0.42) & (y < -0.15)
        return _trapezoid(x, y, -0.15, 0.8, 0.6, 0.8) | ring
    # hat: wide flat brim under a rounded crown
    crown = _rect(x, y, -0.45, 0.45, -0.3, 0.45) | _ellipse(x, y, 0.0, -0.3, 0.45, 0.3)
    return crown | _ellipse(x, y, 0.0, 0.45, 0.95, 0.14)


def _pattern_mask(pattern: np.ndarray, x: np.ndarray, y: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Where the secondary colour shows: stripes, a dot lattice, or a checkerboard, moving with the product.

    `pattern` and `phase` are per item ([N], [N, 2]); x and y are [N, T, H, W]. Each item only pays for its pattern.
    """
    out = np.zeros(x.shape, dtype=bool)
    for kind in (1, 2, 3):
        idx = np.flatnonzero(pattern == kind)
        if len(idx) == 0:
            continue
        px = x[idx] + phase[idx, 0, None, None, None]
        py = y[idx] + phase[idx, 1, None, None, None]
        if kind == 1:  # stripes
            out[idx] = np.mod(py, 0.4) < 0.2
        elif kind == 2:  # dots
            out[idx] = (np.mod(px, 0.45) - 0.225) ** 2 + (np.mod(py, 0.45) - 0.225) ** 2 < 0.13**2
        else:  # checks
            out[idx] = (np.floor(px / 0.4) + np.floor(py / 0.4)) % 2 == 0
    return out


def _secondary(rgb: np.ndarray) -> np.ndarray:
    """Pattern colour: a darker shade of light colours, a lighter shade of dark ones, so the hue stays readable."""
    light = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) > 110
    return np.where(light[:, None], rgb * 0.45, rgb * 0.5 + 115).astype(np.float32)


def _sample_scene(products: Products, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-item randomness that does not depend on the camera: exact colours, pattern phase, background, clutter."""
    n = len(products.shape)
    main = COLOUR_RGB[products.colour] * rng.uniform(0.85, 1.08, (n, 1)) + rng.normal(0, 7, (n, 3))
    main = np.clip(main, 0, 255).astype(np.float32)
    grey = rng.uniform(115, 200, (n, 1))
    return {
        "main": main,
        "second": _secondary(main),
        "phase": rng.uniform(0, 1, (n, 2)).astype(np.float32),
        "bg": (grey + rng.normal(0, 10, (n, 3))).astype(np.float32),
        "gradient": (rng.normal(0, 12, (n, 2)) * (products.clutter[:, None] > 0)).astype(np.float32),
        "c_centre": rng.uniform(-1.9, 1.9, (n, _CLUTTER_SLOTS, 2)).astype(np.float32),
        "c_size": rng.uniform(0.15, 0.6, (n, _CLUTTER_SLOTS, 2)).astype(np.float32),
        "c_rgb": rng.uniform(0, 255, (n, _CLUTTER_SLOTS, 3)).astype(np.float32),
    }


def _world_coords(views: Views, size: int) -> tuple[np.ndarray, np.ndarray]:
    """World (object) coordinates of every pixel centre, each [N, T, H, W], for the given cameras."""
    p = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    px, py = p[None, None, None, :], p[None, None, :, None]
    cos, sin = np.cos(views.angle)[..., None, None], np.sin(views.angle)[..., None, None]
    s = views.scale[..., None, None]
    dx, dy = px - views.offset_x[..., None, None], py - views.offset_y[..., None, None]
    return ((cos * dx + sin * dy) / s).astype(np.float32), ((-sin * dx + cos * dy) / s).astype(np.float32)


def _clutter_index(x: np.ndarray, y: np.ndarray, centre: np.ndarray, size: np.ndarray, count: int) -> np.ndarray:
    """Index of the top-most clutter primitive at each pixel (-1: none); even slots are ellipses, odd ones boxes."""
    top = np.full(x.shape, -1, dtype=np.int8)
    for k in range(count):
        dx = np.abs(x - centre[:, k, 0, None, None, None]) / size[:, k, 0, None, None, None]
        dy = np.abs(y - centre[:, k, 1, None, None, None]) / size[:, k, 1, None, None, None]
        inside = dx * dx + dy * dy <= 1 if k % 2 == 0 else np.maximum(dx, dy * 1.6) <= 1
        top[inside] = k
    return top


def _background(level: int, x: np.ndarray, y: np.ndarray, scene: dict[str, np.ndarray]) -> np.ndarray:
    """Background of items sharing one clutter level: tinted grey, a light gradient, then clutter primitives."""
    grad = scene["gradient"][:, :, None, None, None]
    img = scene["bg"][:, None, None, None, :] + (grad[:, 0] * x + grad[:, 1] * y)[..., None]
    if _CLUTTER_COUNT[level] == 0:
        return img
    top = _clutter_index(x, y, scene["c_centre"], scene["c_size"], int(_CLUTTER_COUNT[level]))
    rgb = np.concatenate([scene["c_rgb"], np.zeros_like(scene["c_rgb"][:, :1])], axis=1)  # index -1: "no clutter"
    paint = rgb[np.arange(len(x))[:, None], top.reshape(len(x), -1)].reshape(img.shape)
    alpha = (top >= 0)[..., None] * _CLUTTER_ALPHA[level]
    return img + alpha * (paint - img)


def _render_chunk(products: Products, scene: dict[str, np.ndarray], views: Views, size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Render the items of one chunk to uint8 [N, T, H, W, 3]."""
    x, y = _world_coords(views, size)
    img = np.empty(x.shape + (3,), dtype=np.float32)
    for level in np.unique(products.clutter):
        idx = np.flatnonzero(products.clutter == level)
        img[idx] = _background(int(level), x[idx], y[idx], {k: v[idx] for k, v in scene.items()})
    obj = np.zeros(x.shape, dtype=bool)
    for s in np.unique(products.shape):
        idx = np.flatnonzero(products.shape == s)
        obj[idx] = shape_mask(int(s), x[idx], y[idx])
    second = _pattern_mask(products.pattern, x, y, scene["phase"])
    colour = np.where(second[..., None], scene["second"][:, None, None, None, :], scene["main"][:, None, None, None, :])
    shade = (1.0 - 0.08 * np.clip(y, -1, 1))[..., None]  # soft top light, so products are not flat cut-outs
    img = np.where(obj[..., None], colour * shade, img)
    noise = rng.integers(-127, 128, img.shape, dtype=np.int8)  # uniform sensor noise; std 73.3 before scaling
    img += noise * (_NOISE_SIGMA[products.clutter] / 73.3)[:, None, None, None, None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render(products: Products, views: Views, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render N products under their [N, T] cameras to uint8 frames [N, T, size, size, 3]."""
    scene = _sample_scene(products, rng)
    n, t = views.scale.shape
    out = np.empty((n, t, size, size, 3), dtype=np.uint8)
    step = max(1, _CHUNK_PIXELS // (t * size * size))
    for start in range(0, n, step):
        sl = slice(start, start + step)
        chunk_products = Products(*(a[sl] for a in products))
        chunk_views = Views(*(a[sl] for a in views))
        out[sl] = _render_chunk(chunk_products, {k: v[sl] for k, v in scene.items()}, chunk_views, size, rng)
    return out


def still_views(n: int, rng: np.random.Generator) -> Views:
    """One camera per product photo: scale, position and a slight tilt jitter."""
    f32 = np.float32
    return Views(rng.uniform(0.5, 0.85, (n, 1)).astype(f32), rng.uniform(-0.15, 0.15, (n, 1)).astype(f32),
                 rng.uniform(-0.15, 0.15, (n, 1)).astype(f32), rng.normal(0, 0.1, (n, 1)).astype(f32))  # fmt: skip


def video_views(motion: np.ndarray, num_frames: int, rng: np.random.Generator) -> Views:
    """Camera paths centred on a random mid-clip state, so a clip and its reversal are equally likely.

    Zoom-in and zoom-out (likewise pan-left and pan-right) thus share the same distribution of frames; only the
    order of frames tells them apart. Pan directions are the camera's: panning left makes the product drift right.
    """
    n = len(motion)
    ramp = np.linspace(-1.0, 1.0, num_frames)[None, :]

    def sign(forward: str, backward: str = "") -> np.ndarray:
        """+1 for clips with the forward motion, -1 for the backward one, 0 otherwise; [N, 1]."""
        back = motion == MOTIONS.index(backward) if backward else np.zeros(n, dtype=bool)
        return ((motion == MOTIONS.index(forward)).astype(float) - back)[:, None]

    zoom = sign("zoom-in", "zoom-out") * rng.uniform(0.17, 0.27, (n, 1))  # log-scale change over half the clip
    pan = sign("pan-left", "pan-right") * rng.uniform(0.25, 0.4, (n, 1))  # image half-widths over half the clip
    spin = sign("rotate") * rng.choice([-1.0, 1.0], (n, 1)) * rng.uniform(0.35, 0.6, (n, 1))  # radians, either way
    shake = rng.normal(0, 0.012, (3, n, num_frames))
    # mid-clip scale spans a wide range, so the scale of any one frame says little about the zoom direction
    log_scale = rng.uniform(np.log(0.4), np.log(0.95), (n, 1)) + zoom * ramp + shake[2]
    x = rng.uniform(-0.1, 0.1, (n, 1)) + pan * ramp + shake[0]
    y = rng.uniform(-0.1, 0.1, (n, 1)) + shake[1]
    angle = rng.normal(0, 0.1, (n, 1)) + spin * ramp
    return Views(*(a.astype(np.float32) for a in (np.exp(log_scale), x, y, angle)))


def add_events(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw events onto clips in place: a flash brightens one frame; an occluding bar sweeps across a few frames.

    Returns a bool [N, len(EVENTS)] of which events each clip got.
    """
    n, t, size = frames.shape[:3]
    has = rng.random((n, len(EVENTS))) < np.array([EVENT_PROBABILITY[e] for e in EVENTS])
    when = rng.integers(0, t, n)
    span = min(t, 3)
    start = rng.integers(0, t - span + 1, n)
    ltr = rng.random(n) < 0.5
    shade = rng.integers(20, 70, n)
    width = max(2, size // 5)
    for i in np.flatnonzero(has[:, 0]):
        frames[i, when[i]] = np.clip(frames[i, when[i]] * 0.35 + 170, 0, 255).astype(np.uint8)
    for i in np.flatnonzero(has[:, 1]):
        xs = np.linspace(-width, size, span + 2)[1:-1].astype(int)
        for k, x0 in enumerate(xs if ltr[i] else xs[::-1]):
            frames[i, start[i] + k, :, max(0, x0):max(0, x0 + width)] = shade[i]
    return has
