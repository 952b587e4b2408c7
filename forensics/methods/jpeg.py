"""JPEG compression history: quantization tables, blocking grid, double compression, JPEG traces.

Why: a JPEG file remembers how it was made. Its quantization tables name the encoder family
and quality; its 8x8 blocking grid should start at pixel (0, 0); and when a JPEG is decoded,
edited and saved again, the DCT coefficients of the untouched part carry the periodic
histogram of the *first* quantization, while a pasted region (decoded from another file, or
shifted off the grid) does not. Four measurements:

1. Tables: the IJG quality whose scaled ITU-T T.81 Annex K tables match best, and whether
   the tables are standard (libjpeg-made) or custom (camera firmware, some editors). Reported
   only: the tables describe the encoder, not an edit, so they do not enter the score.
2. Blocking grid: the pixel-domain blockiness of Fan & de Queiroz ("Identification of bitmap
   compression history: JPEG detection and quantizer estimation", IEEE TIP 2003), folded
   modulo 8 in both directions as in the block-artifact-grid idea of Li, Yuan & Yu ("Passive
   detection of doctored JPEG image via block artifact grid extraction", Signal Processing
   2009). Stronger blocking on a grid other than (0, 0) suggests an earlier compression
   followed by a crop or shift (non-aligned double compression); it counts only when the
   decoded pixels' DCT on that grid shows integer periodicity well above control offsets
   (Bianchi & Piva, "Detection of nonaligned double JPEG compression based on integer
   periodicity maps", IEEE TIFS 2012), since textures alone also fold unevenly.
3. Aligned double quantization (ADQ): per AC frequency, the likelihood of the coefficient
   histogram under single compression versus double compression with a primary step
   ``q1``, with the unquantized distribution estimated by calibration (DCT of the decoded
   image shifted by 4 pixels), as in Bianchi, De Rosa & Piva ("Improved DCT coefficient
   analysis for forgery localization in JPEG images", ICASSP 2011) and Bianchi & Piva
   ("Image forgery localization via block-grained analysis of JPEG artifacts", IEEE TIFS
   2012), which refine Lin, He, Tang & Tang ("Fast, automatic and fine-grained tampered JPEG
   image detection via DCT coefficient analysis", Pattern Recognition 2009). Per 8x8 block,
   the summed log-likelihood ratio over the frequencies that show double quantization gives
   the probability that the block was compressed twice; in a double-compressed image the
   blocks that lack it (a pasted region) form the heatmap.
4. JPEG traces in lossless files (PNG, TIFF, BMP): a decoded JPEG saved losslessly keeps
   the quantization lattice in the DCT of its pixels on the original grid. The grid is the
   offset whose coefficients are most periodic, the steps are recovered per frequency, and
   each block is scored for fitting that lattice; blocks moved off the grid or never
   compressed do not fit (the copy-move model of Novozamsky & Sorel, "Detection of
   copy-move image modification using JPEG compression model", Forensic Sci. Int. 2018).
   Files without such a lattice (never compressed, or steps below 3) are not applicable.

Limits stated honestly: double quantization is only visible when the first compression was
coarser than the second at some frequencies (a high-quality original re-saved at a lower
quality leaves no histogram trace); double compression alone means "re-saved", which is an
edit of the file but not necessarily of the content. The lossless-file path needs the
pixels untouched since decoding: resized, filtered or re-rendered images lose the lattice
(the NoSo PNGs of ../shared/data carry none that this test finds).
"""

from typing import Any, ClassVar

import cv2
import numpy as np
from scipy.special import i0e

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage
from forensics.jpeg_tables import ZIGZAG, closest_ijg_quality, estimate_quality
from forensics.methods.base import Method

#: Orthonormal 8-point DCT-II matrix; the JPEG forward DCT of a block ``B`` is ``C @ B @ C.T``.
_DCT8: np.ndarray = np.array(
    [[np.sqrt((1 if k == 0 else 2) / 8) * np.cos((2 * n + 1) * k * np.pi / 16) for n in range(8)] for k in range(8)],
    dtype=np.float32,
)

#: ``vec(C @ B @ C.T) = vec(B) @ _DCT8_KRON_T`` for row-major 8x8 blocks.
_DCT8_KRON_T: np.ndarray = np.ascontiguousarray(np.kron(_DCT8, _DCT8).T)

#: AC frequencies analysed for double quantization (zig-zag positions 1..15).
_ADQ_FREQUENCIES: tuple[tuple[int, int], ...] = ZIGZAG[1:16]
#: Histogram half-range, in quantized units.
_BINS = 64
#: Candidate primary quantization steps.
_MAX_Q1 = 32
#: Blocks sampled for the calibrated (unquantized) coefficient distribution.
_CALIBRATION_BLOCKS = 20000
#: Standard deviation of the rounding/truncation noise added between the two compressions,
#: in DCT units (pixel rounding plus colour conversion).
_ROUNDING_NOISE = 0.8
#: Minimum total log-likelihood gain (nats) for a frequency to count as double quantized.
_MIN_FREQUENCY_GAIN = 12.0
#: Weight of the single-compression model mixed into the double-compression one (robustness).
_MIX = 0.05
#: Blocks sampled per grid offset for the non-aligned lattice test.
_LATTICE_BLOCKS = 2000
#: Low AC frequencies and candidate steps for the non-aligned lattice test.
_LATTICE_FREQUENCIES: tuple[tuple[int, int], ...] = ZIGZAG[1:6]
_LATTICE_STEPS: np.ndarray = np.arange(2, 25, dtype=np.float32)[:, None]
#: Control offsets (relative to the tested origin) that give the no-lattice baseline.
_LATTICE_CONTROLS: tuple[tuple[int, int], ...] = ((4, 4), (4, 0), (0, 4), (2, 6))
#: Lattice score at the shifted origin over the controls' median needed to call a non-aligned earlier compression.
_NADQ_RATIO = 4.0
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
#: Below this peak-to-median ratio no blocking grid is called present.
_GRID_PRESENT = 1.03


class JpegMethod(Method):
    name: ClassVar[str] = "jpeg"
    version: ClassVar[str] = "1.0"
    applies_to: ClassVar[frozenset[ImageFormat]] = frozenset({ImageFormat.JPEG, ImageFormat.PNG, ImageFormat.TIFF, ImageFormat.BMP})
    default_logistic: ClassVar[Logistic] = Logistic(center=1.0, scale=0.35)

    def examine(self, image: DecodedImage) -> Finding:
        if image.format is not ImageFormat.JPEG:
            return self._examine_decoded(image)
        jpeg = image.jpeg
        if jpeg is None or not jpeg.coefficients:
            return self.not_applicable("The JPEG coefficients could not be read, so the compression history cannot be examined.")
        tables = _describe_tables(jpeg.quant_tables, jpeg.table_of_component)
        coefficients = jpeg.coefficients[0]
        if min(coefficients.shape[:2]) < 4 or min(image.luma.shape) < 32:
            return self.not_applicable("The image is too small for a block-statistics analysis.", {"tables": tables})
        luma_q = jpeg.table_for(0)
        grid = _blocking_grid(image.luma)
        adq = _aligned_double_quantization(coefficients, luma_q, image.luma)
        nadq = _nonaligned_lattice(image.luma, grid["origin"], np.random.default_rng(1))
        statistic, parts = _combine(adq, nadq)
        details: dict[str, Any] = {
            "tables": tables,
            "grid": grid,
            "nonaligned_double_compression": nadq,
            "double_compression": {k: v for k, v in adq.items() if k != "map"},
            "statistic_parts": parts,
        }
        label, summary = _verdict(tables, grid, adq, nadq)
        heatmap = adq["map"] if adq["double_compressed"] else None
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


def _blocking_grid(luma: np.ndarray) -> dict[str, Any]:
    """Fold the mean absolute neighbour difference modulo 8 in x and y (Fan & de Queiroz 2003).

    Returns the grid origin (row, column) where blocking is strongest, its peak-to-median
    strength in each direction, and the same strength measured at origin (0, 0). Blocking
    alone is a weak cue (textures also fold unevenly); a shifted origin is only reported as
    non-aligned compression when :func:`_nonaligned_lattice` confirms it.
    """
    step = max(1, int(np.ceil(max(luma.shape) / 1000)))
    dx = np.abs(np.diff(luma[::step], axis=1)).mean(axis=0)
    dy = np.abs(np.diff(luma[:, ::step], axis=0)).mean(axis=1)
    fold_x, fold_y = _fold8(dx), _fold8(dy)
    if fold_x is None or fold_y is None:
        return {"present": False, "origin": [0, 0], "strength": [1.0, 1.0], "strength_at_origin_0": [1.0, 1.0]}
    # diff index i lies between pixels i and i+1, so a boundary after pixel i means origin (i + 1) % 8
    ix, iy = int(np.argmax(fold_x)), int(np.argmax(fold_y))
    sx, sy = _peak_ratio(fold_x, ix), _peak_ratio(fold_y, iy)
    s0x, s0y = _peak_ratio(fold_x, 7), _peak_ratio(fold_y, 7)
    origin = [(iy + 1) % 8, (ix + 1) % 8]
    return {
        "present": bool(max(sx, sy) >= _GRID_PRESENT),
        "origin": origin,
        "strength": [round(sy, 4), round(sx, 4)],
        "strength_at_origin_0": [round(s0y, 4), round(s0x, 4)],
    }


def _fold8(profile: np.ndarray) -> np.ndarray | None:
    n = (profile.size // 8) * 8
    if n < 16:
        return None
    return profile[:n].reshape(-1, 8).mean(axis=0)


def _peak_ratio(fold: np.ndarray, index: int) -> float:
    others = np.delete(fold, index)
    return float(fold[index] / max(float(np.median(others)), 1e-6))


def _nonaligned_lattice(luma: np.ndarray, origin: list[int], rng: np.random.Generator) -> dict[str, Any]:
    """Test for an earlier JPEG compression on the shifted grid ``origin`` (non-aligned DQ).

    On the grid of an earlier compression, the DCT of the decoded pixels clusters at
    integer multiples of the earlier steps (the integer periodicity exploited by Bianchi &
    Piva, "Detection of nonaligned double JPEG compression based on integer periodicity
    maps", IEEE TIFS 2012). Per low frequency the Rayleigh statistic ``n * R^2`` of the
    phases ``2 pi c / q`` is maximised over candidate steps ``q``; the sum over frequencies
    at ``origin`` is compared with the median at control offsets, where no lattice exists.
    """
    if origin == [0, 0]:
        return {"tested": False, "detected": False}
    oy, ox = origin
    controls = [o for o in (((oy + a) % 8, (ox + b) % 8) for a, b in _LATTICE_CONTROLS) if o != (0, 0)]
    score, *control_scores = _lattice_scores(luma, [(oy, ox), *controls], rng)
    baseline = max(float(np.median(control_scores)), 1.0)
    ratio = score / baseline
    return {
        "tested": True,
        "detected": bool(ratio >= _NADQ_RATIO),
        "lattice_score": round(score, 1),
        "control_median": round(baseline, 1),
        "ratio": round(ratio, 2),
    }


def _lattice_scores(luma: np.ndarray, offsets: list[tuple[int, int]], rng: np.random.Generator, count: int = _LATTICE_BLOCKS) -> list[float]:
    """Per grid offset, the sum over low frequencies of the best Rayleigh statistic
    ``n R^2`` over candidate steps (all offsets' sampled blocks go through one DCT)."""
    samples = [_sample_blocks(luma[oy:, ox:], count, rng) for oy, ox in offsets]
    coefficients = _block_dct(np.concatenate(samples)) if samples else np.zeros((0, 8, 8), np.float32)
    scores: list[float] = []
    start = 0
    for blocks in samples:
        part = coefficients[start : start + blocks.shape[0]]
        start += blocks.shape[0]
        scores.append(_lattice_statistic(part) if part.shape[0] >= 16 else 0.0)
    return scores


def _lattice_statistic(coefficients: np.ndarray) -> float:
    total = 0.0
    for r, c in _LATTICE_FREQUENCIES:
        v = coefficients[:, r, c][None]
        keep = np.abs(v) >= _LATTICE_STEPS / 2
        phase = 2.0 * np.pi * v / _LATTICE_STEPS
        n = np.maximum(keep.sum(axis=1), 1)
        resultant = np.where(keep, np.cos(phase), 0.0).sum(axis=1) ** 2 + np.where(keep, np.sin(phase), 0.0).sum(axis=1) ** 2
        total += float((resultant / n).max())
    return total


def _sample_blocks(pixels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` random 8x8 blocks of ``pixels`` on the grid starting at (0, 0)."""
    rows, cols = pixels.shape[0] // 8, pixels.shape[1] // 8
    n = rows * cols
    if n == 0:
        return np.zeros((0, 8, 8), dtype=np.float32)
    picks = rng.choice(n, size=min(n, count), replace=False)
    r, c = np.divmod(picks, cols)
    idx = np.arange(8)
    return pixels[(r * 8)[:, None, None] + idx[None, :, None], (c * 8)[:, None, None] + idx[None, None, :]]


def _jpeg_traces(luma: np.ndarray, rgb: np.ndarray) -> dict[str, Any] | None:
    """Recover an earlier JPEG compression from decoded pixels and map the blocks that misfit it.

    The grid origin is the offset whose DCT coefficients are most periodic (lattice score,
    see :func:`_lattice_scores`), confirmed against control offsets; the step of each
    frequency is the largest ``q`` whose phases ``2 pi c / q`` still concentrate
    (resultant >= 0.5, see :func:`_recover_step`). Each block then gets the log-likelihood
    ratio of its coefficients under the lattice (von Mises phases with the concentration implied by the resultant)
    versus uniform phases; blocks pasted off the grid or never compressed (the copy-moves
    of Novozamsky & Sorel, Forensic Sci. Int. 2018; CASIA splices) misfit. Returns None
    when no lattice with steps >= 3 exists (never-compressed or very high quality). Blocks
    with a clipped colour channel are left out (clipping moves them off the lattice).
    """
    rng = np.random.default_rng(2)
    scores = np.array(_lattice_scores(luma, [(a, b) for a in range(8) for b in range(8)], rng, _ORIGIN_SEARCH_BLOCKS)).reshape(8, 8)
    oy, ox = (int(v) for v in np.unravel_index(int(np.argmax(scores)), scores.shape))
    ratio = float(scores[oy, ox] / max(float(np.median(scores)), 1.0))
    if ratio < _NADQ_RATIO:
        return None
    shifted = luma[oy:, ox:]
    rows, cols = shifted.shape[0] // 8, shifted.shape[1] // 8
    blocks = shifted[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    # a block with any channel clipped at 0 or 255 left the lattice when it was decoded
    clipped = _clipped_blocks(rgb[oy : oy + rows * 8, ox : ox + cols * 8])
    coefficients = _block_dct(blocks)
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
    smoothed = _box3(llr.reshape(rows, cols))
    prob_fit = 1.0 / (1.0 + np.exp(-np.clip(smoothed, -30.0, 30.0)))
    informative = np.abs(smoothed) > 1.0
    off = (prob_fit < 0.5) & informative
    return {
        "origin": [oy, ox],
        "lattice_ratio": round(ratio, 1),
        "recovered_steps": steps,
        "fraction_blocks_off_lattice": round(float(off.sum() / max(int(informative.sum()), 1)), 4),
        "fraction_blocks_informative": round(float(informative.mean()), 4),
        "fraction_blocks_clipped": round(float(clipped.mean()), 4),
        "map_contrast": round(_map_contrast(prob_fit, informative), 4),
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


def _block_dct(blocks: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT of (N, 8, 8) pixel blocks (level-shifted by 128 as JPEG does).

    One (N, 64) x (64, 64) product with the Kronecker form of the separable transform,
    which BLAS runs far faster than N small batched products.
    """
    n = blocks.shape[0]
    flat = blocks.reshape(n, 64).astype(np.float32) - 128.0
    return (flat @ _DCT8_KRON_T).reshape(n, 8, 8)


def _calibration_coefficients(luma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """DCT of blocks of the decoded image on the grid shifted by (4, 4): an estimate of the
    coefficient distribution free of the current quantization (Fridrich's calibration)."""
    return _block_dct(_sample_blocks(luma[4:, 4:], _CALIBRATION_BLOCKS, rng))


def _histogram(values: np.ndarray) -> np.ndarray:
    """Counts of integer ``values`` clipped to [-_BINS, _BINS]; along the last axis when 2-D."""
    width = 2 * _BINS + 1
    idx = np.clip(values, -_BINS, _BINS).astype(np.int64) + _BINS
    if idx.ndim == 1:
        return np.bincount(idx, minlength=width).astype(np.float64)
    idx += (np.arange(idx.shape[0]) * width)[:, None]
    return np.bincount(idx.ravel(), minlength=width * idx.shape[0]).reshape(idx.shape[0], width).astype(np.float64)


def _aligned_double_quantization(coefficients: np.ndarray, table: np.ndarray, luma: np.ndarray) -> dict[str, Any]:
    """Per-frequency primary step estimate and per-block double-compression probability.

    For each frequency the observed histogram of quantized coefficients is compared with
    simulated single-compression (``round(u / q2)``) and double-compression
    (``round((round(u / q1) * q1 + noise) / q2)``) histograms of the calibrated coefficients
    ``u``; the ``q1`` of highest likelihood wins. Frequencies whose gain over single
    compression exceeds ``_MIN_FREQUENCY_GAIN`` nats contribute their per-coefficient
    log-likelihood ratio to every block.
    """
    rng = np.random.default_rng(0)
    calib = _calibration_coefficients(luma, rng)
    rows, cols = coefficients.shape[:2]
    n_blocks = rows * cols
    flat_positions = [r * 8 + c for r, c in _ADQ_FREQUENCIES]
    observed_all = np.ascontiguousarray(coefficients.reshape(n_blocks, 64)[:, flat_positions].T)
    q1s = np.arange(2, _MAX_Q1 + 1, dtype=np.float32)[:, None]
    llr = np.zeros(n_blocks, dtype=np.float32)
    per_frequency: list[dict[str, Any]] = []
    primary = np.zeros((8, 8), dtype=np.int32)
    total_gain = 0.0
    for k, (r, c) in enumerate(_ADQ_FREQUENCIES):
        q2 = int(table[r, c])
        u = calib[:, r, c]
        noise = rng.normal(0.0, _ROUNDING_NOISE, u.size).astype(np.float32)
        v = observed_all[k]
        observed = _histogram(v)
        single = _histogram(np.rint(u / q2)) + 0.5
        single /= single.sum()
        log_single = np.log(single)
        base_ll = float(observed @ log_single)
        sims = _histogram(np.rint((np.rint(u[None] / q1s) * q1s + noise[None]) / q2)) + 0.5
        sims /= sims.sum(axis=1, keepdims=True)
        log_mixed = np.log((1.0 - _MIX) * sims + _MIX * single[None])
        lls = log_mixed @ observed
        lls[q1s[:, 0] == q2] = -np.inf  # q1 == q2 is single compression again
        best = int(np.argmax(lls))
        gain = float(lls[best]) - base_ll
        best_q1 = int(q1s[best, 0]) if gain > 0 else 0
        per_frequency.append({"position": [r, c], "q2": q2, "q1": best_q1 or q2, "gain_nats": round(max(gain, 0.0), 2)})
        if best_q1 and gain >= _MIN_FREQUENCY_GAIN:
            primary[r, c] = best_q1
            total_gain += gain
            lut = (log_mixed[best] - log_single).astype(np.float32)
            llr += lut[np.clip(v, -_BINS, _BINS).astype(np.int64) + _BINS]
    llr = llr.reshape(rows, cols)
    used = [e for e in per_frequency if primary[e["position"][0], e["position"][1]] > 0]
    double = bool(len(used) >= 2)
    primary_quality = closest_ijg_quality({(e["position"][0], e["position"][1]): e["q1"] for e in used}) if double else None
    # smooth the evidence over 3x3 blocks: a pasted region spans several blocks
    smoothed = _box3(llr)
    prob_double = 1.0 / (1.0 + np.exp(-np.clip(smoothed, -30.0, 30.0)))
    informative = np.abs(smoothed) > 1.0
    lacking = (prob_double < 0.5) & informative
    frac_lacking = float(lacking.sum() / max(int(informative.sum()), 1))
    contrast = _map_contrast(prob_double, informative)
    return {
        "double_compressed": double,
        "frequencies_double_quantized": len(used),
        "gain_nats_per_block": round(total_gain / n_blocks, 4),
        "estimated_primary_quality": primary_quality.to_dict() if primary_quality else None,
        "primary_steps": per_frequency,
        "fraction_blocks_lacking_double_compression": round(frac_lacking, 4) if double else None,
        "fraction_blocks_informative": round(float(informative.mean()), 4),
        "map_contrast": round(contrast, 4) if double else None,
        "map": (1.0 - prob_double).astype(np.float32),
    }


def _box3(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1, mode="edge")
    return sum(p[i : i + a.shape[0], j : j + a.shape[1]] for i in range(3) for j in range(3)) / 3.0


def _map_contrast(prob: np.ndarray, informative: np.ndarray) -> float:
    """Bimodality of the block map: the smaller group's share times the gap between groups."""
    vals = prob[informative]
    if vals.size < 8:
        return 0.0
    low, high = vals[vals < 0.5], vals[vals >= 0.5]
    if low.size == 0 or high.size == 0:
        return 0.0
    share = min(low.size, high.size) / vals.size
    return float(2.0 * share * (high.mean() - low.mean()))


def _combine(adq: dict[str, Any], nadq: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """One statistic from the kinds of evidence (larger = more suspicious).

    ``double_compression_strength`` = log(1 + 10 g) with g the ADQ log-likelihood gain per
    block (nats); ``map_inconsistency`` (0-1, counted twice) is the bimodality of the
    per-block map; ``nonaligned`` = log10 of the lattice ratio (capped at 2) when an earlier
    compression on a shifted grid is detected.
    """
    strength = float(np.log1p(10.0 * adq["gain_nats_per_block"])) if adq["double_compressed"] else 0.0
    inconsistency = float(adq["map_contrast"] or 0.0)
    nonaligned = float(min(np.log10(nadq["ratio"]), 2.0)) if nadq["detected"] else 0.0
    parts = {
        "double_compression_strength": round(strength, 4),
        "map_inconsistency": round(inconsistency, 4),
        "nonaligned": round(nonaligned, 4),
    }
    return strength + 2.0 * inconsistency + nonaligned, parts


def _verdict(tables: dict[str, Any], grid: dict[str, Any], adq: dict[str, Any], nadq: dict[str, Any]) -> tuple[str, str]:
    quality = tables["estimated_quality"]
    kind = "standard IJG" if tables["standard_ijg"] else "custom"
    if nadq["detected"]:
        oy, ox = grid["origin"]
        return (
            "misaligned grid",
            f"An earlier JPEG compression whose 8x8 grid starts at pixel ({oy}, {ox}) instead of (0, 0) is visible, so the picture "
            f"was compressed, then cropped or shifted, then saved again with {kind} tables at quality about {quality}.",
        )
    if adq["double_compressed"]:
        frac = adq["fraction_blocks_lacking_double_compression"] or 0.0
        return (
            "double compressed",
            f"The DCT histograms show an earlier, coarser JPEG compression{_primary_text(adq)}, then a save with {kind} tables "
            f"at quality about {quality}; {frac:.0%} of the informative blocks lack that earlier trace.",
        )
    return (
        "no earlier compression found",
        f"No trace of an earlier, coarser JPEG compression was found (saved with {kind} tables, quality about {quality}).",
    )


def _primary_text(adq: dict[str, Any]) -> str:
    primary = adq.get("estimated_primary_quality")
    return f" at quality about {primary['quality']}" if primary else ""
