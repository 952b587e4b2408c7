"""Error level analysis (ELA), scored by how inconsistent the error level is inside the image.

Why: when a JPEG is re-saved at a quality its blocks have already been quantized to, the
re-save changes them little; blocks with another compression history (pasted from elsewhere,
shifted off the 8x8 grid, or never compressed) change more. Krawetz ("A Picture's Worth",
Black Hat 2007) turned that into ELA: re-save at a known quality, show the per-pixel error.
Raw ELA mostly maps texture (high-frequency blocks always change more) and its absolute
level only says how compressed the file is; large evaluations found it weak as a detector
(Zampoglou, Papadopoulos & Kompatsiaris, "Large-scale evaluation of splicing localization
algorithms for web images", Multimedia Tools and Applications 76, 2017). This implementation
therefore:

* re-saves in the DCT domain: requantizing a block's dequantized DCT coefficients with the
  luminance table of IJG quality ``q`` and measuring the error is what a decode / re-encode
  does, up to pixel rounding (the JPEG DCT is orthonormal, so squared coefficient error is
  squared pixel error). For JPEG files it reads the coefficients from the file; for other
  formats it takes the 8x8 DCT of the decoded luminance on the grid at (0, 0);
* normalises each block's error by the error that block *would* show with no compression
  history at ``q``, so texture and flatness cancel: ``min(c^2, Q^2/12)`` per coefficient
  for decoded pixels (a coefficient under half a step rounds to zero, a larger one leaves a
  uniformly distributed remainder), and for a JPEG's own coefficients the mean error of a
  value spread over the file's own quantization bin. A ratio near 1 means "no history at
  q", near 0 "already quantized at q". A JPEG is re-saved only at qualities coarser than its
  own table (finer grids cannot see history the file's steps erased); a decompressed JPEG
  saved losslessly is re-saved at the quality whose lattice its pixels fit best;
* scores inconsistency, not level: the log ratio, pooled over windows of blocks, is turned
  into robust z-scores against the image's own median and MAD, and the statistic is the
  largest (over the re-save qualities) fraction of informative windows with ``|z| > 3``.
  A uniform re-save of the whole image changes the level, not this statistic.

Only the 4x4 lowest-frequency coefficients are used: they carry most of the non-zero
coefficients and keep a 24 MP file well under half a second. ELA means nothing for a file
that was never JPEG-compressed: GIF is excluded, and a PNG/TIFF/BMP/WebP/HEIF/AVIF file is
examined only when its pixels still fit some IJG quality's lattice (a decompressed JPEG saved
losslessly, like the CASIA v2 TIFFs); the fit and an 8x8 blocking ratio are in the details.
"""

import math
from typing import Any

import cv2
import numpy as np

from forensics.calibration import Logistic
from forensics.dct import block_dct
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage
from forensics.jpeg_tables import ijg_table
from forensics.methods.base import Method
from forensics.robust import robust_z

#: IJG qualities the image is "re-saved" at.
QUALITIES: tuple[int, ...] = (60, 65, 70, 75, 80, 85, 90, 95)
#: The k x k lowest-frequency DCT coefficients used (DC excluded).
LOW = 4
#: A non-JPEG file is examined when its best global error ratio is below this (JPEG history).
HISTORY_FIT = 0.7
#: Global error ratios below this mean the quality's lattice contains the file's own one
#: (requantizing cannot change anything), so that quality carries no evidence.
DEGENERATE_RATIO = 0.02
#: Robust z beyond which a window counts as inconsistent.
Z_THRESHOLD = 3.0
#: Floor of the robust spread of log ratios, so near-constant maps do not inflate z.
MIN_SPREAD = 0.15
#: Minimum number of informative coefficients (|c| > Q/2) for a window to be judged.
MIN_INFORMATIVE = 12
#: Quantized indices beyond this use the wide-bin error expectation.
K_MAX = 24
#: For a JPEG file only re-save qualities coarser than its own table by this median factor are
#: used: a finer requantization grid cannot reveal history the file's own steps erased.
COARSER = 1.25
#: At most this many 8x8 blocks are examined (every n-th block in both directions beyond it).
MAX_BLOCKS = 65536
#: Smallest image side (pixels) the method works on.
MIN_SIDE = 64

_AC_MASK = np.ones((LOW, LOW), dtype=bool)
_AC_MASK[0, 0] = False


def block_stride(rows: int, cols: int) -> int:
    """Every how many blocks (in both directions) to examine so at most ``MAX_BLOCKS`` are."""
    return max(1, math.ceil(math.sqrt(rows * cols / MAX_BLOCKS)))


def low_coefficients(image: DecodedImage, stride: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Dequantized low-frequency luminance AC coefficients of every ``stride``-th 8x8 block, and the file's own steps.

    Returns ``(coef, own_step)``: ``coef`` has shape (block rows, block cols, LOW*LOW - 1);
    ``own_step`` is the file's quantization step per coefficient for a JPEG (whose
    coefficients are read from the file), else ``None`` (orthonormal DCT of the decoded luma
    on the grid at (0, 0); blocks with a clipped channel, whose re-save error clipping
    distorts, are zeroed so they count as flat). Blocks are taken whole and on their grid;
    none is resampled.
    """
    rows, cols = image.height // 8, image.width // 8
    jpeg = image.jpeg
    if jpeg is not None and jpeg.coefficients:
        own = jpeg.table_for(0)[:LOW, :LOW].astype(np.float32)
        quantized = jpeg.coefficients[0][:rows:stride, :cols:stride, :LOW, :LOW]
        return quantized[:, :, _AC_MASK].astype(np.float32) * own[_AC_MASK], own[_AC_MASK]
    luma = image.luma[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8)[::stride, :, ::stride, :]
    coef = block_dct(luma.transpose(0, 2, 1, 3), size=LOW)
    rgb = image.rgb[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8, 3)[::stride, :, ::stride, :]
    clipped = (rgb.min(axis=(1, 3, 4)) == 0) | (rgb.max(axis=(1, 3, 4)) == 255)
    coef = coef[:, :, _AC_MASK]
    coef[clipped] = 0.0
    return coef, None


def _lattice_expectation(step: np.ndarray, own_step: np.ndarray) -> np.ndarray:
    """Mean squared requantization error at ``step`` of a value uniform in a bin of ``own_step``.

    Row ``j``, column ``K_MAX + 1 + k`` is for quantized index ``k`` of coefficient ``j``; the
    two end columns (``|k| > K_MAX``) take the wide-bin limit ``step^2 / 12``; ``k = 0`` is 0
    because a coefficient quantized to zero stays zero whatever its history.
    """
    k = np.arange(-K_MAX, K_MAX + 1, dtype=np.float64)
    u = (np.arange(32, dtype=np.float64) + 0.5) / 32 - 0.5
    x = (k[None, :, None] + u[None, None, :]) * own_step[:, None, None]
    q = step.astype(np.float64)[:, None, None]
    inner = ((x - q * np.rint(x / q)) ** 2).mean(axis=2)
    inner[:, K_MAX] = 0.0
    edge = (step.astype(np.float64) ** 2 / 12)[:, None]
    return np.concatenate([edge, inner, edge], axis=1).astype(np.float32)


def requantization(coef: np.ndarray, own_step: np.ndarray | None, quality: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block: squared error of requantizing at ``quality``, its no-history expectation, informative count.

    Without a known own step a coefficient ``c`` is expected to leave ``min(c^2, Q^2/12)``;
    with one (a JPEG file) the expectation is that of a value spread over its own bin.
    """
    step = ijg_table(quality)[:LOW, :LOW][_AC_MASK].astype(np.float32)
    residual = coef - step * np.rint(coef / step)
    error = np.einsum("ijk,ijk->ij", residual, residual)
    if own_step is None:
        expected = np.minimum(coef * coef, step * step / 12).sum(axis=2)
    else:
        index = np.clip(np.rint(coef / own_step).astype(np.int32), -K_MAX - 1, K_MAX + 1) + (K_MAX + 1)
        expected = _lattice_expectation(step, own_step)[np.arange(step.size), index].sum(axis=2)
    informative = (np.abs(coef) > step / 2).sum(axis=2, dtype=np.int32).astype(np.float32)
    return error, expected, informative


def blocking_ratio(luma: np.ndarray, side: int = 1024) -> float:
    """Mean absolute neighbour difference across 8x8 block boundaries over that inside blocks.

    Measured on the top-left ``side`` x ``side`` pixels (the grid starts there).
    """
    luma = luma[:side, :side]
    dh = np.abs(np.diff(luma, axis=1))
    dv = np.abs(np.diff(luma, axis=0))
    on_h = (np.arange(dh.shape[1]) % 8) == 7
    on_v = (np.arange(dv.shape[0]) % 8) == 7
    inside = float(dh[:, ~on_h].mean() + dv[~on_v].mean())
    across = float(dh[:, on_h].mean() + dv[on_v].mean())
    return across / inside if inside > 0 else 1.0


class ErrorLevelAnalysis(Method):
    name = "ela"
    version = "1.0"
    cost_seconds = 0.03
    applies_to = frozenset(ImageFormat) - {ImageFormat.GIF}
    default_logistic = Logistic(center=0.004, scale=0.0015)

    def examine(self, image: DecodedImage) -> Finding:
        if min(image.width, image.height) < MIN_SIDE:
            return self.not_applicable(f"The image is smaller than {MIN_SIDE} pixels on a side; too few blocks to compare.")
        stride = block_stride(image.height // 8, image.width // 8)
        coef, own_step = low_coefficients(image, stride)
        window = max(2, round(min(coef.shape[:2]) / 24))
        details: dict[str, Any] = {
            "coefficients_from": "block DCT of the decoded luma" if own_step is None else "JPEG coefficients",
            "blocking_ratio": round(blocking_ratio(image.luma), 4),
            "window_blocks": window,
            "block_stride": stride,
        }
        if own_step is None:
            # A decompressed JPEG saved losslessly: re-save at the quality whose lattice the
            # pixels fit best (its blocks barely change; blocks of another history do).
            ratios = {q: _global_ratio(*requantization(coef, None, q)[:2]) for q in QUALITIES}
            fit_quality = min(ratios, key=ratios.__getitem__)
            details.update(history_fit=round(ratios[fit_quality], 4), history_fit_quality=fit_quality)
            if ratios[fit_quality] >= HISTORY_FIT:
                return self.not_applicable(
                    f"The {image.format.value.upper()} pixels show no JPEG compression history, so re-saving them says nothing.",
                    details,
                )
            qualities: tuple[int, ...] = (fit_quality,)
        else:
            qualities = tuple(q for q in QUALITIES if float(np.median(ijg_table(q)[:LOW, :LOW][_AC_MASK] / own_step)) >= COARSER)
            if not qualities:
                return self.not_applicable("The JPEG is already quantized more coarsely than every re-save quality tried.", details)
        per_quality: dict[str, dict[str, float]] = {}
        best: tuple[float, int, np.ndarray] | None = None
        for quality in qualities:
            entry, z = _inconsistency(*requantization(coef, own_step, quality), window)
            per_quality[str(quality)] = entry
            if z is not None and (best is None or entry["outlier_fraction"] > best[0]):
                best = (entry["outlier_fraction"], quality, z)
        details["per_quality"] = per_quality
        if best is None:
            return self.not_applicable("Too few textured blocks to compare error levels.", details)
        fraction, quality, z = best
        details.update(outlier_fraction=round(fraction, 4), quality=quality)
        heatmap = np.clip(np.abs(z) / (2 * Z_THRESHOLD), 0.0, 1.0).astype(np.float32)
        label = "inconsistent error levels" if fraction >= self.logistic.center else "consistent error levels"
        summary = (
            f"Re-saved at quality {quality}, {fraction:.1%} of the textured image areas changed markedly more or less "
            "than the rest of the image after allowing for their texture."
        )
        return self.ok(fraction, label, summary, details, heatmap=heatmap)


def _global_ratio(error: np.ndarray, expected: np.ndarray) -> float:
    total = float(expected.sum())
    return float(error.sum()) / total if total > 0 else 1.0


def _inconsistency(
    error: np.ndarray, expected: np.ndarray, informative: np.ndarray, window: int
) -> tuple[dict[str, float], np.ndarray | None]:
    """Robust z-scores of the windowed log error ratio, and the fraction of windows beyond ``Z_THRESHOLD``.

    Returns the measurements and the z map, or ``None`` for the map when the quality carries
    no evidence (degenerate lattice or too few informative windows).
    """
    ratio = _global_ratio(error, expected)
    entry: dict[str, float] = {"global_ratio": round(ratio, 4)}
    if ratio < DEGENERATE_RATIO:
        return entry, None
    box = (window, window)
    err_s = cv2.boxFilter(error, -1, box, normalize=False, borderType=cv2.BORDER_REFLECT)
    exp_s = cv2.boxFilter(expected, -1, box, normalize=False, borderType=cv2.BORDER_REFLECT)
    inf_s = cv2.boxFilter(informative, -1, box, normalize=False, borderType=cv2.BORDER_REFLECT)
    valid = inf_s >= MIN_INFORMATIVE
    if np.count_nonzero(valid) < 16:
        return entry, None
    log_ratio = np.log((err_s + 1.0) / (exp_s + 1.0))
    z, center, spread = robust_z(log_ratio, valid, min_spread=MIN_SPREAD)
    fraction = float(np.count_nonzero(np.abs(z) > Z_THRESHOLD)) / float(np.count_nonzero(valid))
    entry.update(outlier_fraction=round(fraction, 4), median_log_ratio=round(center, 4), spread=round(spread, 4))
    return entry, z
