"""JPEG compression history, local claim: does a region carry a different compression history?

Why: when a JPEG is decoded, edited and saved again, the DCT coefficients of the untouched
part carry the periodic histogram of the *first* quantization, while a pasted region
(decoded from another file, or shifted off the grid) does not. This method scores only that
*local* inconsistency; whether the *whole* file was compressed twice (a uniform re-save, a
crop and re-save) is the separate claim of the ``resave`` method, so a uniformly re-saved
photo does not raise this statistic. Measurements:

1. Tables: the IJG quality whose scaled ITU-T T.81 Annex K tables match best, and whether
   the tables are standard (libjpeg-made) or custom (camera firmware, some editors). Reported
   only: the tables describe the encoder, not an edit.
2. Blocking grid: the folded pixel-domain blockiness of Fan & de Queiroz (IEEE TIP 2003) and
   Li, Yuan & Yu (Signal Processing 2009), reported only (see
   :func:`forensics.jpeg_history.blocking_grid`).
3. Aligned double quantization map (Bianchi & Piva, "Image forgery localization via
   block-grained analysis of JPEG artifacts", IEEE TIFS 2012, refining Lin, He, Tang & Tang,
   Pattern Recognition 2009; see :func:`forensics.jpeg_history.aligned_double_quantization`):
   per 8x8 block, the probability that the block was compressed twice. The statistic is the
   bimodality of that map (the smaller group's share times the gap between the groups'
   mean probabilities, 0-1): high when one part of a double-compressed image lacks the
   earlier compression that the rest shows. Zero when no double compression is found at
   all (there is then no history to be inconsistent with). The map is the heatmap.
4. JPEG traces in lossless files (PNG, TIFF, BMP): a decoded JPEG saved losslessly keeps
   the quantization lattice in the DCT of its pixels on the original grid. The grid is the
   offset whose coefficients are most periodic, the steps are recovered per frequency, and
   each block is scored for fitting that lattice; blocks moved off the grid or never
   compressed do not fit (the copy-move model of Novozamsky & Sorel, "Detection of
   copy-move image modification using JPEG compression model", Forensic Sci. Int. 2018).
   Files without such a lattice (never compressed, or steps below 3) are not applicable.

Limits stated honestly: double quantization is only visible when the first compression was
coarser than the second at some frequencies (a high-quality original re-saved at a lower
quality leaves no histogram trace), so a region can only be told apart when the rest of the
image shows that trace. The lossless-file path needs the pixels untouched since decoding:
resized, filtered or re-rendered images lose the lattice (the NoSo PNGs of ../shared/data
carry none that this test finds).
"""

from typing import Any, ClassVar

import cv2
import numpy as np
from scipy.special import expit, i0e

from forensics.calibration import Logistic
from forensics.dct import block_dct
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage
from forensics.jpeg_history import NADQ_RATIO, aligned_double_quantization, blocking_grid, box3, lattice_scores, map_contrast
from forensics.jpeg_tables import ZIGZAG, estimate_quality
from forensics.methods.base import Method

#: Candidate steps when recovering quantization from decoded pixels, and the blocks used for it.
_TRACE_STEPS: np.ndarray = np.arange(2, 41, dtype=np.float32)[:, None]
_TRACE_FREQUENCIES: tuple[tuple[int, int], ...] = ZIGZAG[1:15]
_TRACE_BLOCKS = 8000
_ORIGIN_SEARCH_BLOCKS = 256
#: Resultant length a recovered step must reach (lattice clearly present), and the samples
#: (count and share of the sampled blocks) it must rest on.
_TRACE_MIN_RESULTANT = 0.5
_TRACE_MIN_SAMPLES = 50
_TRACE_MIN_SHARE = 0.01
#: Coefficients this close to zero are rounding noise around the zero lattice point.
_TRACE_ZERO = 1.5
#: Statistic of the decoded-pixel path = this weight times the map contrast, so that its
#: decision line (1.0, contrast about 0.067) sits above decoded authentic JPEGs (contrast <= 0.05).
_LATTICE_CONTRAST_WEIGHT = 15.0

#: Statistic of a JPEG file = this weight times the ADQ map's bimodality, so that the decision
#: line (1.0) sits at a bimodality of 1/3.
_MAP_CONTRAST_WEIGHT = 3.0


class JpegMethod(Method):
    name: ClassVar[str] = "jpeg"
    version: ClassVar[str] = "2.0"
    cost_seconds: ClassVar[float] = 0.02
    applies_to: ClassVar[frozenset[ImageFormat]] = frozenset({ImageFormat.JPEG, ImageFormat.PNG, ImageFormat.TIFF, ImageFormat.BMP})
    default_logistic: ClassVar[Logistic] = Logistic(center=1.0, scale=0.35)

    def examine(self, image: DecodedImage) -> Finding:
        if image.format is not ImageFormat.JPEG:
            return self._examine_decoded(image)
        jpeg = image.jpeg
        if jpeg is None or not jpeg.coefficients:
            return self.not_applicable("The JPEG coefficients could not be read, so the compression history cannot be examined.")
        tables = _describe_tables(jpeg.quant_tables, jpeg.table_of_component)
        if min(jpeg.coefficients[0].shape[:2]) < 4 or min(image.luma.shape) < 32:
            return self.not_applicable("The image is too small for a block-statistics analysis.", {"tables": tables})
        adq = aligned_double_quantization(image)
        inconsistency = float(adq["map_contrast"] or 0.0)
        statistic = _MAP_CONTRAST_WEIGHT * inconsistency
        details: dict[str, Any] = {
            "tables": tables,
            "grid": blocking_grid(image.luma),
            "double_compression": {k: v for k, v in adq.items() if k != "map"},
            "statistic_parts": {"map_inconsistency": round(inconsistency, 4)},
        }
        label, summary = _verdict(tables, adq, statistic >= self.logistic.center)
        heatmap = np.array(adq["map"]) if adq["double_compressed"] else None
        return self.ok(statistic, label, summary, details, heatmap=heatmap)

    def _examine_decoded(self, image: DecodedImage) -> Finding:
        """A lossless file: look for the quantization lattice of an earlier JPEG compression."""
        if min(image.luma.shape) < 64:
            return self.not_applicable("The image is too small to look for traces of an earlier JPEG compression.")
        traces = _jpeg_traces(image.luma, image.rgb)
        if traces is None:
            return self.not_applicable(
                f"No trace of an earlier JPEG compression was found in this {image.format.value.upper()} file, so the JPEG analysis does not apply."
            )
        prob_fit = traces.pop("map")
        statistic = _LATTICE_CONTRAST_WEIGHT * traces["map_contrast"]
        frac = traces["fraction_blocks_off_lattice"]
        oy, ox = traces["origin"]
        label = "off-lattice blocks" if statistic >= self.logistic.center else "consistent JPEG history"
        summary = (
            f"This {image.format.value.upper()} file is a decoded JPEG (8x8 grid at pixel ({oy}, {ox}), quantization steps recovered from the pixels); "
            f"{frac:.0%} of the informative blocks do not fit that earlier compression."
        )
        details = {
            "path": "jpeg_traces_in_decoded_pixels",
            "jpeg_traces": traces,
            "statistic_parts": {"map_contrast_x15": round(statistic, 4)},
        }
        # block map on the recovered grid: it starts at pixel (oy, ox), less than one block off
        return self.ok(statistic, label, summary, details, heatmap=(1.0 - prob_fit).astype(np.float32))


def _describe_tables(quant_tables: tuple[np.ndarray, ...], table_of_component: tuple[int, ...]) -> dict[str, Any]:
    """IJG quality and standard/custom verdict for the luminance and chrominance tables."""
    luma = estimate_quality(quant_tables[table_of_component[0]], chroma=False)
    out: dict[str, Any] = {"count": len(quant_tables), "luminance": luma.to_dict()}
    if len(table_of_component) > 1:
        out["chrominance"] = estimate_quality(quant_tables[table_of_component[1]], chroma=True).to_dict()
    out["standard_ijg"] = bool(luma.standard and out.get("chrominance", {}).get("standard", True))
    out["estimated_quality"] = luma.quality
    return out


def _jpeg_traces(luma: np.ndarray, rgb: np.ndarray) -> dict[str, Any] | None:
    """Recover an earlier JPEG compression from decoded pixels and map the blocks that misfit it.

    The grid origin is the offset whose DCT coefficients are most periodic (lattice score,
    see :func:`forensics.jpeg_history.lattice_scores`), confirmed against control offsets; the step of each
    frequency is the largest ``q`` whose phases ``2 pi c / q`` still concentrate
    (resultant >= 0.5, see :func:`_recover_step`). Each block then gets the log-likelihood
    ratio of its coefficients under the lattice (von Mises phases with the concentration implied by the resultant)
    versus uniform phases; blocks pasted off the grid or never compressed (the copy-moves
    of Novozamsky & Sorel, Forensic Sci. Int. 2018; CASIA splices) misfit. Returns None
    when no lattice with steps >= 3 exists (never-compressed or very high quality). Blocks
    with a clipped colour channel are left out (clipping moves them off the lattice).
    """
    rng = np.random.default_rng(2)
    scores = np.array(lattice_scores(luma, [(a, b) for a in range(8) for b in range(8)], rng, _ORIGIN_SEARCH_BLOCKS)).reshape(8, 8)
    oy, ox = (int(v) for v in np.unravel_index(int(np.argmax(scores)), scores.shape))
    ratio = float(scores[oy, ox] / max(float(np.median(scores)), 1.0))
    if ratio < NADQ_RATIO:
        return None
    shifted = luma[oy:, ox:]
    rows, cols = shifted.shape[0] // 8, shifted.shape[1] // 8
    blocks = shifted[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    # a block with any channel clipped at 0 or 255 left the lattice when it was decoded
    clipped = _clipped_blocks(rgb[oy : oy + rows * 8, ox : ox + cols * 8])
    coefficients = block_dct(blocks)
    usable = np.flatnonzero(~clipped)
    sample = coefficients[rng.choice(usable, size=min(usable.size, _TRACE_BLOCKS), replace=False)] if usable.size else coefficients[:0]
    llr = np.zeros(rows * cols, dtype=np.float32)
    steps: dict[str, int] = {}
    for r, c in _TRACE_FREQUENCIES:
        found = _recover_step(sample[:, r, c])
        if found is None:
            continue
        q, resultant = found
        # wrapped-normal spread implied by the resultant, as a von Mises concentration
        variance = -np.log(min(resultant, 0.999)) / (2.0 * np.pi**2)
        kappa = float(min(1.0 / (4.0 * np.pi**2 * variance), 20.0))
        log_norm = float(np.log(i0e(kappa)) + kappa)
        llr += kappa * np.cos(2.0 * np.pi * coefficients[:, r, c] / q) - log_norm
        steps[f"{r},{c}"] = int(q)
    if not steps:
        return None
    llr[clipped] = 0.0
    smoothed = box3(llr.reshape(rows, cols))
    prob_fit = expit(smoothed)
    informative = np.abs(smoothed) > 1.0
    off = (prob_fit < 0.5) & informative
    return {
        "origin": [oy, ox],
        "lattice_ratio": round(ratio, 1),
        "recovered_steps": steps,
        "fraction_blocks_off_lattice": round(float(off.sum() / max(int(informative.sum()), 1)), 4),
        "fraction_blocks_informative": round(float(informative.mean()), 4),
        "fraction_blocks_clipped": round(float(clipped.mean()), 4),
        "map_contrast": round(map_contrast(prob_fit, informative), 4),
        "map": prob_fit.astype(np.float32),
    }


def _clipped_blocks(rgb: np.ndarray) -> np.ndarray:
    """Flat bool per 8x8 block: does any pixel have a channel at 0 or 255?"""
    inside = cv2.inRange(np.ascontiguousarray(rgb), (1, 1, 1), (254, 254, 254))
    # block mean of 0/255 "clipped" flags via area resampling: one flagged pixel gives >= 4
    means = cv2.resize(cv2.bitwise_not(inside), (rgb.shape[1] // 8, rgb.shape[0] // 8), interpolation=cv2.INTER_AREA)
    return (means > 0).ravel()


def _recover_step(values: np.ndarray) -> tuple[float, float] | None:
    """The quantization step of one frequency from decoded-pixel DCT values, or None.

    Coefficients within rounding noise of zero (``|c| < 1.5``) are left out. The step of
    most concentrated phases ``2 pi c / q`` may be a divisor of the true step (its lattice
    contains the true one), so the answer is the largest multiple of it whose resultant
    stays within 80% of the best; ``q + 1`` is never such a multiple.
    """
    v = values[np.abs(values) >= _TRACE_ZERO][None, :]
    if v.shape[1] < max(_TRACE_MIN_SAMPLES, _TRACE_MIN_SHARE * values.size):
        return None
    phase = 2.0 * np.pi * v / _TRACE_STEPS
    resultant = np.hypot(np.cos(phase).mean(axis=1), np.sin(phase).mean(axis=1))
    best = int(np.argmax(resultant))
    if resultant[best] < _TRACE_MIN_RESULTANT:
        return None
    base = int(_TRACE_STEPS[best, 0])
    steps = _TRACE_STEPS[:, 0].astype(int)
    multiples = np.flatnonzero((steps % base == 0) & (resultant >= 0.8 * resultant[best]))
    q = int(steps[multiples[-1]])
    if q < 3:
        return None
    return float(q), float(resultant[multiples[-1]])


def _verdict(tables: dict[str, Any], adq: Any, inconsistent: bool) -> tuple[str, str]:
    quality = tables["estimated_quality"]
    kind = "standard IJG" if tables["standard_ijg"] else "custom"
    saved = f"saved with {kind} tables at quality about {quality}"
    if not adq["double_compressed"]:
        return (
            "no earlier compression found",
            f"No trace of an earlier, coarser JPEG compression was found ({saved}), so no region can be told apart by its compression history.",
        )
    frac = adq["fraction_blocks_lacking_double_compression"] or 0.0
    primary = adq["estimated_primary_quality"]
    earlier = f" (at quality about {primary['quality']})" if primary else ""
    if inconsistent:
        return (
            "region with a different history",
            f"Most of the image shows an earlier, coarser JPEG compression{earlier}, but {frac:.0%} of the informative blocks lack it "
            f"and form a separate group: a region with a different compression history ({saved}).",
        )
    return (
        "consistent history",
        f"The image shows an earlier, coarser JPEG compression{earlier} throughout ({saved}); "
        f"the {frac:.0%} of informative blocks lacking it do not form a separate group.",
    )
