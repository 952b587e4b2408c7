"""Per-8x8-block forensic signals: the input of the deep scan network.

Why these and not pixels: a localizer trained on raw content learns the content of its
training set; one trained on acquisition and compression traces learns what a splice,
a retouch or a resampled paste does to them, which carries over to photos of anything.
The channels follow the traces the learned localizers of the literature feed on, reduced to
one vector per JPEG block so that a compact network runs on a 24 MP photo in a fraction of
a second:

* noise residuals (the second-order "KB" high-pass and the diagonal Haar detail, as in the
  SRM residuals of Fridrich & Kodovsky, IEEE TIFS 2012, used for splicing by Zhou et al.,
  "Learning rich features for image manipulation detection", CVPR 2018), in luma and chroma;
* block DCT energy per band and, for JPEG files, the share of zeroed quantized coefficients
  (the DCT stream CAT-Net reads; Kwon et al., IJCV 2022);
* the 8x8 blocking grid at the aligned phase and at the strongest shifted phase (Li, Yuan &
  Yu, Signal Processing 2009: a paste from another JPEG keeps its own grid);
* the aligned double-quantization map of Bianchi & Piva (IEEE TIFS 2012), computed by
  :mod:`forensics.jpeg_history`, for JPEG files.

Residual levels are given both as measured and as robust z-scores against the image's own
median, so that the network compares a region with the rest of the same photo.

The same function prepares training data and inference input, so the two cannot drift.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from forensics.dct import block_dct
from forensics.image import DecodedImage
from forensics.jpeg_history import aligned_double_quantization
from forensics.robust import MAD_TO_SIGMA

BLOCK = 8
#: Channel names, in the order of the feature map's first axis.
CHANNELS: tuple[str, ...] = (
    "brightness",
    "clipped",
    "log_kb",
    "log_hh",
    "log_texture",
    "z_kb",
    "z_hh",
    "z_texture",
    "z_dct_high",
    "z_dct_mid",
    "z_chroma",
    "grid_aligned",
    "grid_shifted",
    "jpeg_zeros",
    "is_jpeg",
    "adq",
    "adq_valid",
)
#: Neutral value of the double-quantization channel where it was not measured.
ADQ_NEUTRAL = 0.5
#: Block rows per strip: the full-resolution work is done a strip (512 px) at a time, so its
#: temporary arrays stay small whatever the image's size.
STRIP_ROWS = 64
#: Rows of context read above and below a strip (3x3 filters at full and at half resolution).
_MARGIN = 2
#: Cells of the map a default scan works on at most: larger images are pooled 2x2, 3x3...
MAX_CELLS = 80_000
_KB = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], np.float32) / 4.0
_HH = np.array([[1, -1], [-1, 1]], np.float32) / 2.0
_Z_CLIP = 6.0
_u, _v = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
_HIGH = (_u + _v >= 8).ravel()
_MID = ((_u + _v >= 4) & (_u + _v < 8)).ravel()
#: Columns: the mean over the high band, and over the mid band, of a block's 64 squared coefficients.
_BANDS = np.stack([_HIGH / _HIGH.sum(), _MID / _MID.sum()], axis=1).astype(np.float32)


@dataclass(frozen=True, slots=True)
class BlockFeatures:
    """A ``(len(CHANNELS), rows, cols)`` float32 map over the image's whole 8x8 blocks."""

    values: np.ndarray
    rows: int
    cols: int


def pool_factor(rows: int, cols: int, max_cells: int = MAX_CELLS) -> int:
    """The smallest integer ``f`` such that pooling f x f blocks leaves at most ``max_cells`` cells."""
    return max(1, math.ceil(math.sqrt(rows * cols / max_cells)))


def pooled(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` cells of a ``(..., rows, cols)`` map (the remainder is dropped).

    The network is trained on maps pooled by 1, 2 and 3, so a large photo is scanned at a
    coarser cell at a fraction of the cost.
    """
    if factor == 1:
        return values
    rows, cols = values.shape[-2] // factor, values.shape[-1] // factor
    cut = values[..., : rows * factor, : cols * factor]
    return cut.reshape(*cut.shape[:-2], rows, factor, cols, factor).mean(axis=(-3, -1))


def _block_mean(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean over each 8x8 block (area resampling by an integer factor is exactly that)."""
    return cv2.resize(np.ascontiguousarray(a[: rows * BLOCK, : cols * BLOCK]), (cols, rows), interpolation=cv2.INTER_AREA)


def _z(a: np.ndarray) -> np.ndarray:
    center = float(np.median(a))
    spread = max(MAD_TO_SIGMA * float(np.median(np.abs(a - center))), 0.05)
    return np.clip((a - center) / spread, -_Z_CLIP, _Z_CLIP)


def _grid(dh: np.ndarray, dv: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Per block and phase: the mean step across columns plus across rows at that phase of the 8x8 grid.

    ``dh`` and ``dv`` hold each pixel's step to its right and lower neighbour (0 past the image).
    """
    across = cv2.resize(dh, (cols * BLOCK, rows), interpolation=cv2.INTER_AREA).reshape(rows, cols, BLOCK)
    down = cv2.resize(dv, (cols, rows * BLOCK), interpolation=cv2.INTER_AREA)
    return across + down.reshape(rows, BLOCK, cols).transpose(0, 2, 1)


def _grid_strength(per_phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log of the aligned phase's step, and of the strongest other phase's, over the median of the 8."""
    per_phase = per_phase + 0.25
    median = np.median(per_phase, axis=2)
    return np.log(per_phase[:, :, BLOCK - 1] / median), np.log(per_phase[:, :, : BLOCK - 1].max(axis=2) / median)


def _chroma_residual(bands: list[np.ndarray]) -> np.ndarray:
    """|KB residual| of R-G plus B-G, at half resolution.

    JPEG stores chroma at half resolution in most files (4:2:0), so the residual is measured
    where the chroma samples are: on 2x2 means, at a quarter of the cost of full resolution.
    """
    half = (bands[0].shape[1] // 2, bands[0].shape[0] // 2)
    total = np.zeros((half[1], half[0]), np.float32)
    for band in (bands[0], bands[2]):
        difference = cv2.resize(cv2.subtract(band, bands[1], dtype=cv2.CV_32F), half, interpolation=cv2.INTER_AREA)
        total += np.abs(cv2.filter2D(difference, -1, _KB, borderType=cv2.BORDER_REFLECT))
    return total


def _measure_strip(luma: np.ndarray, rgb: np.ndarray, size: tuple[int, int], y0: int, y1: int) -> dict[str, np.ndarray]:
    """Every full-resolution measurement of the block rows between pixel rows ``y0`` and ``y1``
    of the image's whole blocks (``size``: their height and width in pixels).

    The strip is copied out with :data:`_MARGIN` rows of context on each side, so a 3x3 filter
    sees the same neighbours as on the whole image; at the edges of the whole blocks the
    filters' border rule applies, as it would on the whole image. The results are the whole
    image's, and no full-size copy of the image is ever made.
    """
    h, w = size
    rows, cols = (y1 - y0) // BLOCK, w // BLOCK
    ya, yb = max(0, y0 - _MARGIN), min(h, y1 + _MARGIN)
    top, n = y0 - ya, y1 - y0
    piece = np.ascontiguousarray(luma[ya:yb, :w])
    core = piece[top : top + n]
    kb = cv2.filter2D(piece, -1, _KB, borderType=cv2.BORDER_REFLECT)[top : top + n]
    hh = cv2.filter2D(piece, -1, _HH, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[top : top + n]
    np.abs(kb, out=kb)
    np.abs(hh, out=hh)
    coef = block_dct(core.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)).reshape(rows, cols, 64)
    np.multiply(coef, coef, out=coef)
    # steps to the next pixel; none past the last row or column (as if the edge were repeated)
    dh = np.zeros((n, w), np.float32)
    cv2.absdiff(core[:, 1:], core[:, :-1], dst=dh[:, :-1])
    dv = np.zeros((n, w), np.float32)
    below = piece[top + 1 : top + n + 1]
    cv2.absdiff(below, core[: below.shape[0]], dst=dv[: below.shape[0]])
    strip_rgb = np.ascontiguousarray(rgb[ya:yb, :w])
    chroma = _chroma_residual(cv2.split(strip_rgb))[top // 2 : (top + n) // 2]
    # 255 where no channel is at 0 or 255
    unclipped = cv2.inRange(strip_rgb[top : top + n], (1, 1, 1), (254, 254, 254)).astype(np.float32)
    return {
        "kb": _block_mean(kb, rows, cols),
        "hh": _block_mean(hh, rows, cols),
        "mean": _block_mean(core, rows, cols),
        "mean_sq": _block_mean(cv2.multiply(core, core), rows, cols),
        "bands": (coef.reshape(-1, 64) @ _BANDS).reshape(rows, cols, 2),
        "chroma": cv2.resize(chroma, (cols, rows), interpolation=cv2.INTER_AREA),
        "clipped": 1.0 - _block_mean(unclipped, rows, cols) / 255.0,
        "phases": _grid(dh, dv, rows, cols),
    }


def _zero_share(coefficients: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Per block, the share of its 63 quantized AC coefficients that are zero (a strip of blocks at a time)."""
    zeros = np.empty((rows, cols), np.float32)
    for r0 in range(0, rows, STRIP_ROWS):
        strip = coefficients[r0 : min(rows, r0 + STRIP_ROWS), :cols]
        count = np.count_nonzero(strip == 0, axis=(2, 3)) - (strip[:, :, 0, 0] == 0)
        zeros[r0 : r0 + strip.shape[0]] = count / 63.0
    return zeros


def _double_quantization(image: DecodedImage, rows: int, cols: int) -> tuple[np.ndarray, float]:
    """The ADQ map ("probability the block lacks the earlier compression") and whether it holds."""
    adq = aligned_double_quantization(image)
    if not adq["double_compressed"]:
        return np.full((rows, cols), ADQ_NEUTRAL, np.float32), 0.0
    return np.asarray(adq["map"], np.float32)[:rows, :cols], 1.0


def block_features(image: DecodedImage, *, with_history: bool = True) -> BlockFeatures:
    """The feature map of ``image``; ``with_history=False`` skips the costly ADQ channel (neutral)."""
    luma = image.luma
    rows, cols = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    if rows < 1 or cols < 1:
        raise ValueError("the image is smaller than one 8x8 block")
    h, w = rows * BLOCK, cols * BLOCK
    strips = [_measure_strip(luma, image.rgb, (h, w), y0, min(h, y0 + STRIP_ROWS * BLOCK)) for y0 in range(0, h, STRIP_ROWS * BLOCK)]
    raw = {key: np.concatenate([strip[key] for strip in strips]) for key in strips[0]}
    kb, hh, mean = raw["kb"], raw["hh"], raw["mean"]
    texture = np.sqrt(np.maximum(raw["mean_sq"] - mean * mean, 0.0))
    brightness = mean / 255.0
    high, mid = np.log(raw["bands"][..., 0] + 1.0), np.log(raw["bands"][..., 1] + 1.0)
    chroma = np.log(raw["chroma"] + 0.1)
    clipped = raw["clipped"]
    aligned, shifted = _grid_strength(raw["phases"])

    log_kb, log_hh, log_tex = np.log(kb + 0.1), np.log(hh + 0.1), np.log(texture + 0.1)
    jpeg = image.jpeg
    is_jpeg = float(jpeg is not None and bool(jpeg.coefficients))
    zeros = np.zeros((rows, cols), np.float32)
    adq, adq_valid = np.full((rows, cols), ADQ_NEUTRAL, np.float32), 0.0
    if is_jpeg:
        zeros = _zero_share(jpeg.coefficients[0], rows, cols)
        if with_history:
            adq, adq_valid = _double_quantization(image, rows, cols)
    channels = [
        brightness,
        clipped,
        log_kb / 3.0,
        log_hh / 3.0,
        log_tex / 3.0,
        _z(log_kb),
        _z(log_hh),
        _z(log_tex),
        _z(high),
        _z(mid),
        _z(chroma),
        aligned,
        shifted,
        zeros,
        np.full((rows, cols), is_jpeg, np.float32),
        adq,
        np.full((rows, cols), adq_valid, np.float32),
    ]
    return BlockFeatures(np.stack(channels).astype(np.float32), rows, cols)
