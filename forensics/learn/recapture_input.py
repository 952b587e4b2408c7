"""The input of the ``recapture`` model: fixed-size full-resolution patches of one decoded image.

Why patches at full resolution: the traces of a photographed screen or print live at the pixel
scale. A camera that photographs an LCD samples its sub-pixel grid a second time and aliases
it into moire (Cao & Kot, "Identification of recaptured photographs on LCD screens", ICASSP
2010); a print adds halftone dots, paper texture and a blur of the fine detail (Tan, Li, Liu &
Jiang, "Face liveness detection from a single image with sparse low rank bilinear
discriminative model", ECCV 2010, who built the NUAA set); both change the local edge profile
and add specular glare (Thongkamwitoon, Muammar & Dragotti, "An image recapture detection
algorithm based on learning dictionaries of edge profiles", IEEE TIFS 2015). Resizing the
image would destroy exactly these traces, so patches are cut, never resampled, and the
model never sees the image's size, aspect or orientation (the reference data's classes
differ in all three).

Patches come from a deterministic grid; the :data:`PATCHES` most textured ones are kept
(texture = standard deviation of the luma differences, measured on a 2x subsample of each
candidate, which keeps the selection cheap on a 12 MP photo), skipping patches that are
mostly clipped. Each patch has four channels: luma minus the patch mean, the luma high-pass
residual (luma minus its 3x3 mean, where a screen grid and halftone show most), and the two
BT.601 chroma differences (colour moire, the blue cast of screens).

The same function prepares the training data (``training/recapture.py``) and the method's
input (``forensics/methods/recapture.py``), so they cannot drift apart.
"""

from dataclasses import dataclass

import numpy as np

#: Side of one patch in pixels.
PATCH = 64
#: Patches per image given to the model.
PATCHES = 24
#: Fewest patches an image must offer (so at least 128 px on each side).
MIN_PATCHES = 4
#: Most candidate positions per axis of the grid (keeps the selection cost bounded on large images).
MAX_GRID = 24
CHANNELS = ("luma (patch mean removed) / 64", "luma 3x3 high-pass residual / 8", "Cb / 32", "Cr / 32")
#: Share of clipped pixels (<= 2 or >= 253) above which a patch is skipped (it holds no texture to read).
CLIPPED_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class RecaptureInput:
    """The model input of one image: ``patches`` (n, 4, PATCH, PATCH) float32 and where they were cut."""

    patches: np.ndarray
    #: (n, 2) top-left corners (row, column) in stored pixel coordinates.
    corners: np.ndarray
    #: Shape of the candidate grid (rows, columns).
    grid: tuple[int, int]


def minimum_side() -> int:
    """The shortest side, in pixels, an image needs to give :data:`MIN_PATCHES` patches."""
    return 2 * PATCH


def _positions(length: int, count_max: int) -> np.ndarray:
    """Evenly spread start positions of non-overlapping patches along one axis."""
    fit = length // PATCH
    count = min(fit, count_max)
    if count <= 0:
        return np.zeros(0, np.int64)
    slack = length - count * PATCH
    # spread the slack between the patches; with count == fit the patches tile the centre
    step = PATCH + slack // max(count, 1)
    start = (length - (count - 1) * step - PATCH) // 2
    return start + step * np.arange(count, dtype=np.int64)


def _box3(x: np.ndarray) -> np.ndarray:
    """3x3 mean over the last two axes, edges replicated."""
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    h, w = x.shape[-2:]
    s = np.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            s += p[..., dy : dy + h, dx : dx + w]
    return s / 9.0


def prepare(rgb: np.ndarray, patches: int = PATCHES) -> RecaptureInput:
    """The model input of an ``(H, W, 3)`` uint8 image, or no patches when it is too small.

    Deterministic: the same pixels always give the same patches in the same order.
    """
    height, width = rgb.shape[:2]
    rows, cols = _positions(height, MAX_GRID), _positions(width, MAX_GRID)
    if len(rows) * len(cols) == 0:
        return RecaptureInput(np.zeros((0, len(CHANNELS), PATCH, PATCH), np.float32), np.zeros((0, 2), np.int64), (len(rows), len(cols)))
    # candidates: every grid cell, as views into the image (rows x cols x PATCH x PATCH x 3)
    corners = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    cells = np.stack([rgb[r : r + PATCH, c : c + PATCH] for r, c in corners])
    small = cells[:, ::2, ::2].astype(np.float32)
    luma_small = small @ np.array([0.299, 0.587, 0.114], np.float32)
    texture = np.abs(np.diff(luma_small, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(luma_small, axis=2)).mean(axis=(1, 2))
    clipped = ((luma_small <= 2) | (luma_small >= 253)).mean(axis=(1, 2))
    texture = np.where(clipped > CLIPPED_SHARE, -1.0, texture)
    # most textured first; ties broken by grid order, so the choice is deterministic
    order = np.lexsort((np.arange(len(texture)), -texture))[:patches]
    chosen = cells[order].astype(np.float32)
    r, g, b = chosen[..., 0], chosen[..., 1], chosen[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    centred = luma - luma.mean(axis=(1, 2), keepdims=True)
    residual = luma - _box3(luma)
    x = np.stack([centred / 64.0, residual / 8.0, cb / 32.0, cr / 32.0], axis=1).astype(np.float32)
    return RecaptureInput(x, corners[order], (len(rows), len(cols)))
