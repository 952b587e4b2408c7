"""JPEG compression history: quantization tables, blocking grid, and aligned double compression.

Why: a JPEG file remembers how it was made. Its quantization tables name the encoder family
and quality; its 8x8 blocking grid should start at pixel (0, 0); and when a JPEG is decoded,
edited and saved again, the DCT coefficients of the untouched part carry the periodic
histogram of the *first* quantization, while a pasted region (decoded from another file, or
shifted off the grid) does not. Three measurements:

1. Tables: the IJG quality whose scaled ITU-T T.81 Annex K tables match best, and whether
   the tables are standard (libjpeg-made) or custom (camera firmware, some editors). Reported
   only: the tables describe the encoder, not an edit, so they do not enter the score.
2. Blocking grid: the pixel-domain blockiness of Fan & de Queiroz ("Identification of bitmap
   compression history: JPEG detection and quantizer estimation", IEEE TIP 2003), folded
   modulo 8 in both directions as in the block-artifact-grid idea of Li, Yuan & Yu ("Passive
   detection of doctored JPEG image via block artifact grid extraction", Signal Processing
   2009). Stronger blocking on a grid other than (0, 0) means the content went through an
   earlier JPEG compression and was then cropped or shifted (non-aligned double compression).
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

Limits stated honestly: double quantization is only visible when the first compression was
coarser than the second at some frequencies (a high-quality original re-saved at a lower
quality leaves no histogram trace); double compression alone means "re-saved", which is an
edit of the file but not necessarily of the content. JPEG traces in PNG/TIFF files are not
analysed here (on the reference data no reliable quantization lattice could be recovered
from decoded pixels), so other formats are not applicable.
"""

import logging
from typing import Any, ClassVar

import numpy as np

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage
from forensics.jpeg_tables import ZIGZAG, estimate_quality
from forensics.methods.base import Method

logger = logging.getLogger(__name__)

#: Orthonormal 8-point DCT-II matrix; the JPEG forward DCT of a block ``B`` is ``C @ B @ C.T``.
_DCT8: np.ndarray = np.array(
    [[np.sqrt((1 if k == 0 else 2) / 8) * np.cos((2 * n + 1) * k * np.pi / 16) for n in range(8)] for k in range(8)],
    dtype=np.float32,
)

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
#: Below this peak-to-median ratio no blocking grid is called present.
_GRID_PRESENT = 1.03


class JpegMethod(Method):
    name: ClassVar[str] = "jpeg"
    version: ClassVar[str] = "1.0"
    applies_to: ClassVar[frozenset[ImageFormat]] = frozenset({ImageFormat.JPEG})
    default_logistic: ClassVar[Logistic] = Logistic(center=1.0, scale=0.35)

    def examine(self, image: DecodedImage) -> Finding:
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
    score = _lattice_score(luma, oy, ox, rng)
    controls = [
        _lattice_score(luma, (oy + a) % 8, (ox + b) % 8, rng) for a, b in _LATTICE_CONTROLS if ((oy + a) % 8, (ox + b) % 8) != (0, 0)
    ]
    baseline = max(float(np.median(controls)), 1.0)
    ratio = score / baseline
    return {
        "tested": True,
        "detected": bool(ratio >= _NADQ_RATIO),
        "lattice_score": round(score, 1),
        "control_median": round(baseline, 1),
        "ratio": round(ratio, 2),
    }


def _lattice_score(luma: np.ndarray, oy: int, ox: int, rng: np.random.Generator) -> float:
    shifted = luma[oy:, ox:]
    blocks = _sample_blocks(shifted, _LATTICE_BLOCKS, rng)
    if blocks.shape[0] < 16:
        return 0.0
    coefficients = _block_dct(blocks)
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


def _block_dct(blocks: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT of (N, 8, 8) pixel blocks (level-shifted by 128 as JPEG does)."""
    b = blocks.astype(np.float32) - 128.0
    return np.matmul(np.matmul(_DCT8, b), _DCT8.T)


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
        "primary_steps": [e for e in per_frequency],
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
            f"An earlier JPEG compression whose 8x8 grid starts at pixel ({oy}, {ox}) instead of (0, 0) is visible, so the picture was compressed before and then cropped or shifted (saved again with {kind} tables, quality about {quality}).",
        )
    if adq["double_compressed"]:
        frac = adq["fraction_blocks_lacking_double_compression"] or 0.0
        return (
            "double compressed",
            f"The DCT histograms show an earlier, coarser JPEG compression (saved again with {kind} tables, quality about {quality}); {frac:.0%} of the informative blocks lack that trace.",
        )
    return (
        "single compression",
        f"No trace of an earlier, coarser JPEG compression was found (saved with {kind} tables, quality about {quality}).",
    )
