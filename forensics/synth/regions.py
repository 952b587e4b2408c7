"""Region shapes, soft edges and compositing shared by the local edits.

Why: editors do not paste hard-edged rectangles. A lasso selection is an irregular polygon,
an elliptical marquee an ellipse, and both are usually feathered by a few pixels; brushes are
soft. Random polygons and ellipses with a Gaussian-feathered edge follow the forged-region
generation of Kwon et al. (CAT-Net, WACV 2021 / IJCV 2022) and the random-shape masks of
Wu, AbdAlmageed & Natarajan (ManTra-Net, CVPR 2019).

The opacity (alpha) is quantised to steps of 1/255 and is exactly 0 outside a bounded
support, so the ground-truth mask (alpha > 0) holds every pixel an edit may change and a
pixel outside it is bit-identical to the original.
"""

import math

import cv2
import numpy as np

#: cv2.fillPoly fixed-point bits: vertices are placed with 1/16 px precision.
_SHIFT = 4


def _feather_margin(sigma: float) -> int:
    return int(math.ceil(3.0 * sigma)) + 1 if sigma > 0 else 0


def random_shape(rng: np.random.Generator, area: float, max_h: int, max_w: int) -> tuple[np.ndarray, str]:
    """A binary region of about ``area`` pixels whose bounding box fits ``max_h`` x ``max_w``.

    Returns the mask cropped to its box and the shape's name (``ellipse`` or ``polygon``, a
    random star-shaped polygon of 5-12 vertices, like a lasso selection). The shape is shrunk
    when the requested area does not fit.
    """
    aspect = float(np.exp(rng.uniform(-0.7, 0.7)))
    if rng.random() < 0.5:
        name, angles, radii = "ellipse", np.linspace(0, 2 * np.pi, 64, endpoint=False), np.ones(64)
    else:
        k = int(rng.integers(5, 13))
        name = "polygon"
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = rng.uniform(0.45, 1.0, k)
    pts = np.stack([radii * np.cos(angles) * math.sqrt(aspect), radii * np.sin(angles) / math.sqrt(aspect)], axis=1)
    x, y = pts[:, 0], pts[:, 1]
    unit_area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    pts = pts * math.sqrt(area / unit_area)
    span = pts.max(axis=0) - pts.min(axis=0)
    pts = pts * min(1.0, (max_w - 2) / span[0], (max_h - 2) / span[1])
    pts = pts - pts.min(axis=0) + 0.5
    w, h = (int(math.ceil(v)) + 1 for v in pts.max(axis=0) + 0.5)
    mask = np.zeros((min(h, max_h), min(w, max_w)), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * (1 << _SHIFT)).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool), name


def feather(shape: np.ndarray, sigma: float) -> np.ndarray:
    """Soft opacity of ``shape`` (float32 in [0, 1], steps of 1/255), padded by the blur's reach.

    The pad is ``ceil(3 sigma) + 1`` pixels on each side; ``sigma`` 0 keeps a hard edge.
    """
    m = _feather_margin(sigma)
    padded = np.pad(shape.astype(np.float32), m)
    if sigma > 0:
        padded = cv2.GaussianBlur(padded, (2 * m - 1, 2 * m - 1), sigma, borderType=cv2.BORDER_CONSTANT)
    return (np.round(padded * 255.0) / 255.0).astype(np.float32)


def soft_region(rng: np.random.Generator, area: float, max_h: int, max_w: int, sigma: float) -> tuple[np.ndarray, str]:
    """:func:`random_shape` feathered by ``sigma``; the padded result fits ``max_h`` x ``max_w``."""
    m = _feather_margin(sigma)
    shape, name = random_shape(rng, area, max_h - 2 * m, max_w - 2 * m)
    return feather(shape, sigma), name


def place(rng: np.random.Generator, size: tuple[int, int], within: tuple[int, int]) -> tuple[int, int]:
    """A uniformly random top-left ``(top, left)`` for a box of ``size`` inside ``within``."""
    return int(rng.integers(0, within[0] - size[0] + 1)), int(rng.integers(0, within[1] - size[1] + 1))


def composite(base: np.ndarray, overlay: np.ndarray, alpha: np.ndarray, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``overlay`` over ``base`` at ``(top, left)`` with opacity ``alpha``.

    Returns the new image (uint8) and the mask of every pixel with non-zero opacity; pixels
    outside that mask are copied unchanged.
    """
    h, w = alpha.shape
    out = base.copy()
    window = (slice(top, top + h), slice(left, left + w))
    a = alpha[..., None]
    mixed = base[window].astype(np.float32) * (1.0 - a) + overlay.astype(np.float32) * a
    out[window] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    mask = np.zeros(base.shape[:2], bool)
    mask[window] = alpha > 0
    return out, mask
