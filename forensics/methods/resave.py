"""Whole-image re-save evidence: was this JPEG file compressed before its last save?

Why: a camera writes its JPEG once; an editor, a messaging app or a crop-and-save decodes it
and compresses it again. That says "this file is not the camera's original encoding", a
claim about the *whole file* and not about a region (a region with a different history is
the ``jpeg`` method's claim). Three cues, each a part of the statistic (larger = more
evidence of re-saving, 0 when the cue found nothing):

1. ``aligned``: aligned double quantization (Bianchi & Piva, "Image forgery localization via
   block-grained analysis of JPEG artifacts", IEEE TIFS 2012, refining Lin, He, Tang & Tang,
   "Fast, automatic and fine-grained tampered JPEG image detection via DCT coefficient
   analysis", Pattern Recognition 2009; computed once per image by
   :func:`forensics.jpeg_history.aligned_double_quantization` and shared with ``jpeg``):
   ``log(1 + 10 g)`` with ``g`` the log-likelihood gain per block (nats) of double over
   single compression, when at least two frequencies are double quantized. The recovered
   primary steps give the first save's IJG quality (``closest_ijg_quality``), reported
   against the final quality read from the file's tables.
2. ``nonaligned``: an earlier compression on a grid shifted from (0, 0), i.e. the picture was
   cropped (or shifted) and saved again (Bianchi & Piva, "Detection of nonaligned double
   JPEG compression based on integer periodicity maps", IEEE TIFS 2012):
   ``log10`` of the lattice ratio over control offsets, capped at 2, when detected.
3. ``error_level``: the absolute error level of naive error level analysis (Krawetz, "A
   Picture's Worth", Black Hat 2007): re-save at IJG quality 95 and measure the error, here
   in the DCT domain (the JPEG DCT is orthonormal, so the squared coefficient error is the
   squared pixel error, up to pixel rounding). Its raw value mostly tracks the file's own
   quality (coarser files change less at q95), which is not evidence of anything, so it is
   normalised by the level that a *single* compression with the file's own table predicts
   for this content (the calibrated, shifted-grid DCT of the decoded image quantized once
   with that table). A re-saved file's coefficients sit on an earlier lattice and change
   less than predicted; the part is ``max(0, -ln(observed / predicted) - margin)``.

Limits stated honestly: every cue needs the earlier compression to be coarser than the last
one at some frequencies (or on another grid). A high-quality original re-saved at a lower
quality (camera q95 -> editor q75) leaves no trace that these tests find, and the
normalised error level is blind to it as well: its *raw* level does differ between such a
pair, but only because the final quality differs, and a phone that writes q70 itself
would look the same. The raw level, the final quality and whether the tables are
standard IJG (libjpeg-made, as editors and libraries write) or custom (as most cameras
write) are reported in the details, not scored. "Re-saved" is an edit of the file, not
necessarily of the scene.
"""

from typing import Any, ClassVar

import numpy as np

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage
from forensics.jpeg_history import (
    CALIBRATION_BLOCKS,
    aligned_double_quantization,
    calibration_coefficients,
    nonaligned_lattice,
    strongest_shifted_lattice,
)
from forensics.jpeg_tables import QualityEstimate, estimate_quality, ijg_table
from forensics.methods.base import Method

#: IJG quality of the ELA re-save (Krawetz's usual choice).
ELA_QUALITY = 95
#: Mean squared error (pixel units) added to both error levels so near-lossless files compare as equal.
_ERROR_FLOOR = 0.02
#: Log-ratio deficit below the single-compression prediction tolerated as estimation noise.
_ERROR_MARGIN = 0.15
#: Cap of the non-aligned part (log10 of the lattice ratio).
_NONALIGNED_CAP = 2.0


class ResaveMethod(Method):
    name: ClassVar[str] = "resave"
    version: ClassVar[str] = "1.0"
    cost_seconds: ClassVar[float] = 0.09
    applies_to: ClassVar[frozenset[ImageFormat]] = frozenset({ImageFormat.JPEG})
    default_logistic: ClassVar[Logistic] = Logistic(center=1.0, scale=0.3)

    def examine(self, image: DecodedImage) -> Finding:
        jpeg = image.jpeg
        if jpeg is None or not jpeg.coefficients:
            return self.not_applicable("The JPEG coefficients could not be read, so the compression history cannot be examined.")
        if min(jpeg.coefficients[0].shape[:2]) < 4 or min(image.luma.shape) < 32:
            return self.not_applicable("The image is too small for a block-statistics analysis.")
        final = estimate_quality(jpeg.table_for(0))
        adq = aligned_double_quantization(image)
        rng = np.random.default_rng(1)
        nadq = nonaligned_lattice(image.luma, strongest_shifted_lattice(image.luma, rng), rng)
        level = error_level(jpeg.coefficients[0], jpeg.table_for(0), image.luma)
        parts = {
            "aligned": round(float(np.log1p(10.0 * adq["gain_nats_per_block"])) if adq["double_compressed"] else 0.0, 4),
            "nonaligned": round(float(min(np.log10(nadq["ratio"]), _NONALIGNED_CAP)) if nadq["detected"] else 0.0, 4),
            "error_level": round(max(0.0, -level["log_ratio"] - _ERROR_MARGIN), 4),
        }
        statistic = float(sum(parts.values()))
        details: dict[str, Any] = {
            "final_quality": final.to_dict(),
            "aligned_double_compression": {k: v for k, v in adq.items() if k not in ("map", "fraction_blocks_lacking_double_compression", "map_contrast")},
            "nonaligned_double_compression": nadq,
            "error_level": level,
            "statistic_parts": parts,
        }
        label, summary = _verdict(final, adq, nadq, parts, statistic >= self.logistic.center)
        return self.ok(statistic, label, summary, details)


def error_level(coefficients: np.ndarray, table: np.ndarray, luma: np.ndarray) -> dict[str, float]:
    """Krawetz's absolute error level at IJG quality 95, and what a single compression predicts.

    Both are mean squared requantization errors per pixel of the luminance AC coefficients:
    ``observed`` for the file's own dequantized coefficients (a sample of blocks),
    ``predicted`` for the calibrated coefficients of the same image (DCT on the grid shifted
    by 4 pixels, free of the file's quantization) quantized once with the file's table.
    """
    rng = np.random.default_rng(3)
    flat = coefficients.reshape(-1, 8, 8)
    sample = flat[rng.choice(flat.shape[0], size=min(flat.shape[0], CALIBRATION_BLOCKS), replace=False)]
    step = table.astype(np.float32)
    observed = _requantization_mse(sample.astype(np.float32) * step)
    predicted = _requantization_mse(np.rint(calibration_coefficients(luma, rng) / step) * step)
    return {
        "quality": ELA_QUALITY,
        "observed_rms": round(float(np.sqrt(observed)), 4),
        "predicted_rms": round(float(np.sqrt(predicted)), 4),
        "log_ratio": round(float(np.log((observed + _ERROR_FLOOR) / (predicted + _ERROR_FLOOR))), 4),
    }


def _requantization_mse(dequantized: np.ndarray) -> float:
    """Mean squared error per pixel of requantizing (N, 8, 8) AC coefficients at ``ELA_QUALITY``."""
    step = ijg_table(ELA_QUALITY).astype(np.float32)
    residual = dequantized - step * np.rint(dequantized / step)
    residual[:, 0, 0] = 0.0
    return float((residual * residual).sum() / max(residual.size, 1))


def _verdict(final: QualityEstimate, adq: Any, nadq: dict[str, Any], parts: dict[str, float], resaved: bool) -> tuple[str, str]:
    kind = "standard IJG" if final.standard else "custom"
    last = f"then at q{final.quality} ({kind} tables)"
    primary = adq["estimated_primary_quality"]
    found: list[str] = []
    if parts["aligned"] > 0:
        found.append(f"first saved at about q{primary['quality']}, {last}" if primary else f"an earlier, coarser compression, {last}")
    if parts["nonaligned"] > 0:
        oy, ox = nadq["origin"]
        found.append(f"an earlier compression on an 8x8 grid starting at pixel ({oy}, {ox}): cropped or shifted, then saved again")
    if parts["error_level"] > 0:
        found.append("an error level at q95 below what one compression with these tables predicts")
    if not found:
        return (
            "no re-save found",
            f"No trace of a compression before the last save (q{final.quality}, {kind} tables) was found; "
            "a re-save from a higher quality would leave none.",
        )
    return ("re-saved" if resaved else "weak re-save evidence", "Evidence of re-saving: " + "; ".join(found) + ".")
