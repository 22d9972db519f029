"""The built-in ``shapes`` demo set: coloured shapes drawn with numpy.

Each image shows one shape (circle, square, triangle, star or cross) in one of
eight colours, at one of three sizes and in one cell of a 3×3 grid, on a dark
tinted background with a gentle gradient and sometimes a little noise. Every
image carries all four facts as attributes and as a caption ("a small red
triangle at the top left"), so one data set serves classification probes,
attribute probes and CLIP-style caption matching.

Drawing is vectorised over a chunk of images: each shape is a signed distance
function evaluated at the pixel centres, and the pixel's coverage is
``clip(0.5 - distance, 0, 1)``. That is a one-pixel box filter across the edge,
the same anti-aliasing 2× supersampling would give, at a quarter of the cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data import Cancel, DataError, ImageData, Progress, check_cancel, stratified_split

SHAPES = ["circle", "square", "triangle", "star", "cross"]
COLOURS: dict[str, tuple[int, int, int]] = {
    # Every colour has one channel of 200 or more, so it stands out against the
    # backgrounds below (every channel at most BG_MAX) even after jitter.
    "red": (220, 40, 40),
    "green": (40, 200, 70),
    "blue": (50, 100, 240),
    "yellow": (235, 215, 40),
    "purple": (160, 70, 220),
    "orange": (245, 140, 30),
    "white": (235, 235, 235),
    "cyan": (40, 205, 215),
}
SIZES = ["small", "medium", "large"]
POSITIONS = ["top left", "top", "top right", "left", "centre", "right",
             "bottom left", "bottom", "bottom right"]
WHERE = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "centre": "in the centre", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}
TEMPLATES = [
    "a {size} {colour} {shape} {where}",
    "{where}, a {size} {colour} {shape}",
    "a picture of a {size} {colour} {shape} {where}",
    "there is a {size} {colour} {shape} {where}",
    "a {size} {shape} in {colour} {where}",
]

# Radius of the circle around each size class, as a fraction of the image side.
SIZE_FRACTION = np.array([0.13, 0.20, 0.28])
# Every shape lies inside this multiple of its radius, whatever its rotation,
# so a shape placed this far from the border is never cut off.
EXTENT = 1.13
COLOUR_JITTER = 18
BG_MAX = 105
MAX_ROTATION = 0.3  # radians; small, so a square stays a square and not a diamond


def caption_variants(shape: str, colour: str, size: str, position: str) -> list[str]:
    """Every caption the generator can write for these attributes."""
    return [t.format(shape=shape, colour=colour, size=size, where=WHERE[position]) for t in TEMPLATES]


@dataclass(frozen=True)
class Layout:
    """What each of the n images shows and where: every random choice made
    before drawing. Arrays have one entry per image; lengths are in pixels."""

    shape: np.ndarray       # index into SHAPES
    colour: np.ndarray      # index into COLOURS
    size: np.ndarray        # index into SIZES
    position: np.ndarray    # index into POSITIONS (row * 3 + column)
    template: np.ndarray    # index into TEMPLATES
    cx: np.ndarray          # shape centre, x to the right
    cy: np.ndarray          # shape centre, y downwards
    radius: np.ndarray
    angle: np.ndarray       # rotation in radians
    fg: np.ndarray          # (n, 3) shape colour after jitter
    bg: np.ndarray          # (n, 3) background tint
    grad_x: np.ndarray      # background brightness change per pixel along x
    grad_y: np.ndarray      # ... and along y
    noise_sd: np.ndarray    # brightness noise; 0 for about half of the images


def layout(n: int, size: int, seed: int) -> Layout:
    """Draw every per-image choice for ``shapes(n, size, seed)``."""
    rng = np.random.default_rng(seed)

    def balanced(k: int) -> np.ndarray:
        # Each value equally often (±1), in a random order: no class is rare
        # even in small sets, and attributes stay close to independent.
        return rng.permutation(np.arange(n) % k).astype(np.int64)

    shape, colour, sz, pos = balanced(len(SHAPES)), balanced(len(COLOURS)), balanced(3), balanced(9)
    template = rng.integers(0, len(TEMPLATES), n)
    radius = size * SIZE_FRACTION[sz] * rng.uniform(0.94, 1.06, n)
    margin = EXTENT * radius + 0.5
    cx = _place(pos % 3, margin, size, rng)
    cy = _place(pos // 3, margin, size, rng)
    angle = np.where(shape == 0, 0.0, rng.uniform(-MAX_ROTATION, MAX_ROTATION, n))
    palette = np.array(list(COLOURS.values()), dtype=np.float64)
    fg = np.clip(palette[colour] + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, (n, 3)), 0, 255)
    bg = rng.uniform(5, 65, (n, 3))                    # a dark random tint
    grad_dir = rng.uniform(0, 2 * np.pi, n)
    grad_amp = rng.uniform(0, 40, n)                   # brightness change across the image
    noise_sd = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(2, 7, n))
    f32 = (lambda a: np.asarray(a, dtype=np.float32))  # drawing is memory-bound: float32
    return Layout(shape=shape, colour=colour, size=sz, position=pos, template=template,
                  cx=f32(cx), cy=f32(cy), radius=f32(radius), angle=f32(angle), fg=f32(fg), bg=f32(bg),
                  grad_x=f32(np.cos(grad_dir) * grad_amp / size),
                  grad_y=f32(np.sin(grad_dir) * grad_amp / size), noise_sd=f32(noise_sd))


def load(n: int = 2000, size: int = 32, seed: int = 0, progress: Progress | None = None,
         cancel: Cancel | None = None) -> ImageData:
    if n < 1:
        raise DataError(f"shapes: n must be at least 1, not {n}")
    if size < 8:
        raise DataError(f"shapes: size must be at least 8 pixels to draw a shape, not {size}")
    lay = layout(n, size, seed)
    images = _draw(lay, size, np.random.default_rng([seed, 1]), progress, cancel)
    colours = list(COLOURS)
    captions = [TEMPLATES[t].format(shape=SHAPES[a], colour=colours[c], size=SIZES[z],
                                    where=WHERE[POSITIONS[p]])
                for t, a, c, z, p in zip(lay.template, lay.shape, lay.colour, lay.size, lay.position)]
    return ImageData(
        name="shapes",
        images=images,
        labels=lay.shape.copy(),
        class_names=list(SHAPES),
        attributes={"shape": (lay.shape, list(SHAPES)), "colour": (lay.colour, colours),
                    "size": (lay.size, list(SIZES)), "position": (lay.position, list(POSITIONS))},
        captions=captions,
        item_names=[f"shapes/{i}" for i in range(n)],
        split=stratified_split(lay.shape, n, seed=seed),
        skipped=[],
    )


def _draw(lay: Layout, size: int, noise_rng: np.random.Generator, progress: Progress | None,
          cancel: Cancel | None) -> np.ndarray:
    n = len(lay.shape)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    chunk = max(1, (1 << 19) // (size * size))  # ~2 MB float32 per temporary array
    centres = np.arange(size, dtype=np.float32) + 0.5
    offset = centres - size / 2
    for start in range(0, n, chunk):
        check_cancel(cancel)
        s = slice(start, min(n, start + chunk))
        b = s.stop - s.start
        # Pixel offsets from the shape centre, rotated: (b, size, size).
        dx = centres[None, None, :] - lay.cx[s, None, None]   # (b, 1, size)
        dy = centres[None, :, None] - lay.cy[s, None, None]   # (b, size, 1)
        cos, sin = np.cos(lay.angle[s])[:, None, None], np.sin(lay.angle[s])[:, None, None]
        u = cos * dx + sin * dy
        v = cos * dy - sin * dx
        dist = np.empty((b, size, size), dtype=np.float32)
        r = lay.radius[s, None, None]
        for k, fn in enumerate(_SDF):
            m = lay.shape[s] == k
            if m.any():
                dist[m] = fn(u[m], v[m], r[m])
        cover = np.clip(0.5 - dist, 0.0, 1.0, out=dist)[..., None]

        # Background: tint plus a linear gradient, kept well below the shape colours.
        ramp = lay.grad_x[s, None, None] * offset[None, None, :] + lay.grad_y[s, None, None] * offset[None, :, None]
        img = lay.bg[s, None, None, :] + ramp[..., None]
        np.clip(img, 0, BG_MAX, out=img)
        # Blend towards the shape colour by coverage: back + (fg - back) * cover.
        paint = lay.fg[s, None, None, :] - img
        paint *= cover
        img += paint
        # Brightness noise (one channel, shared by R, G and B) on the noisy images only.
        noisy = np.flatnonzero(lay.noise_sd[s] > 0)
        grain = noise_rng.standard_normal((len(noisy), size, size, 1), dtype=np.float32)
        grain *= lay.noise_sd[s][noisy, None, None, None]
        img[noisy] += grain
        img += 0.5  # round to nearest on the truncating cast below
        images[s] = np.clip(img, 0, 255, out=img)
        if progress is not None:
            progress(s.stop, n)
    return images


def _place(cell: np.ndarray, margin: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Centre coordinate for grid cell 0/1/2 along one axis: against the near
    border, in the middle, or against the far border, jittered but never so
    far that the shape leaves the image."""
    lo, hi = margin, size - margin
    centre = np.select([cell == 0, cell == 1], [lo, np.full_like(lo, size / 2)], hi)
    jitter = rng.uniform(-0.04, 0.04, len(cell)) * size
    return np.clip(centre + jitter, lo, hi)


# Signed distance functions (negative inside), after Inigo Quilez's 2D
# distance functions (iquilezles.org/articles/distfunctions2d). Arguments are
# offsets from the centre in pixels (v grows downwards) and the radius.

def _circle(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.sqrt(u * u + v * v) - r


def _box(u: np.ndarray, v: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    qx, qy = np.abs(u) - hw, np.abs(v) - hh
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _square(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return _box(u, v, 0.75 * r, 0.75 * r)


def _cross(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    arm, half_width = r, 0.34 * r
    return np.minimum(_box(u, v, arm, half_width), _box(u, v, half_width, arm))


def _triangle(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    # Equilateral, pointing up, centroid at the centre, circumradius 1.1 r
    # (a touch larger than r so its area is closer to the other shapes').
    k = np.float32(np.sqrt(3.0))
    half_side = 1.1 * r * k / 2
    x = np.abs(u) - half_side
    y = -v + half_side / k
    fold = x + k * y > 0
    x, y = np.where(fold, (x - k * y) / 2, x), np.where(fold, (-k * x - y) / 2, y)
    x = x - np.clip(x, -2 * half_side, 0)
    return -np.sqrt(x * x + y * y) * np.sign(y)


def _star(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    # Five points, pointing up, outer radius 1.12 r (its thin points make it
    # look smaller than a circle of the same radius), inner radius 0.45 of it.
    outer, inner = 1.12 * r, np.float32(0.45)
    k1x, k1y = np.float32(0.809016994375), np.float32(-0.587785252292)
    x, y = np.abs(u), -v
    # Fold the plane twice across the star's mirror lines so one spike suffices.
    t = np.maximum(k1x * x + k1y * y, 0)
    x, y = x - 2 * t * k1x, y - 2 * t * k1y
    t = np.maximum(-k1x * x + k1y * y, 0)
    x, y = x + 2 * t * k1x, y - 2 * t * k1y
    x = np.abs(x)
    y = y - outer
    bax, bay = inner * -k1y, inner * k1x - 1
    h = np.clip((x * bax + y * bay) / (bax * bax + bay * bay), 0, outer)
    return np.sqrt((x - bax * h) ** 2 + (y - bay * h) ** 2) * np.sign(y * bax - x * bay)


_SDF = [_circle, _square, _triangle, _star, _cross]
