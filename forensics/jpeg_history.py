"""DCT-domain compression history shared by the ``jpeg`` (local) and ``resave`` (whole-image) methods.

Three measurements of how a JPEG was compressed before its last save:

* :func:`aligned_double_quantization` -- aligned double quantization (ADQ): per AC frequency,
  the likelihood of the coefficient histogram under single compression versus double
  compression with a primary step ``q1``, the unquantized distribution estimated by
  calibration (DCT of the decoded image shifted by 4 pixels), as in Bianchi, De Rosa & Piva
  ("Improved DCT coefficient analysis for forgery localization in JPEG images", ICASSP 2011)
  and Bianchi & Piva ("Image forgery localization via block-grained analysis of JPEG
  artifacts", IEEE TIFS 2012), which refine Lin, He, Tang & Tang ("Fast, automatic and
  fine-grained tampered JPEG image detection via DCT coefficient analysis", Pattern
  Recognition 2009). It yields both the global claim (how many frequencies are double
  quantized, the gain per block, the primary quality) and the per-block map of the local
  claim (which blocks lack the earlier compression).
* :func:`blocking_grid` -- the pixel-domain blockiness of Fan & de Queiroz (IEEE TIP 2003)
  folded modulo 8, as in the block-artifact grid of Li, Yuan & Yu (Signal Processing 2009).
* :func:`nonaligned_lattice` -- an earlier compression on a shifted grid (Bianchi & Piva,
  "Detection of nonaligned double JPEG compression based on integer periodicity maps",
  IEEE TIFS 2012).

Both methods (and the deep scan's block features) need the same ADQ result and run in
parallel threads over one :class:`DecodedImage`, so :func:`aligned_double_quantization`
computes it once per image: a weak-keyed dictionary (the image is immutable and hashed by
identity) holds one slot per image, and a per-slot lock makes the second caller wait for the
first caller's result instead of computing it again. The entry goes away with the image. In
the service the methods run in separate processes: the process that decodes an image
computes the analysis once and shares it with the decoded planes, and the others
:func:`prime` their copy of the image with it (``service/decoded.py``).
"""

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy.special import expit

from forensics.dct import block_dct
from forensics.image import DecodedImage
from forensics.jpeg_tables import ZIGZAG, closest_ijg_quality

#: AC frequencies analysed for double quantization (zig-zag positions 1..15).
_ADQ_FREQUENCIES: tuple[tuple[int, int], ...] = ZIGZAG[1:16]
#: Histogram half-range, in quantized units.
_BINS = 64
#: Candidate primary quantization steps.
_MAX_Q1 = 32
#: Blocks sampled for the calibrated (unquantized) coefficient distribution.
CALIBRATION_BLOCKS = 20000
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
#: Lattice score at the shifted origin over the controls' median needed to call a lattice present.
NADQ_RATIO = 4.0
#: Below this peak-to-median ratio no blocking grid is called present.
_GRID_PRESENT = 1.03


def sample_blocks(pixels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` random 8x8 blocks of ``pixels`` on the grid starting at (0, 0)."""
    rows, cols = pixels.shape[0] // 8, pixels.shape[1] // 8
    n = rows * cols
    if n == 0:
        return np.zeros((0, 8, 8), dtype=np.float32)
    picks = rng.choice(n, size=min(n, count), replace=False)
    r, c = np.divmod(picks, cols)
    idx = np.arange(8)
    return pixels[(r * 8)[:, None, None] + idx[None, :, None], (c * 8)[:, None, None] + idx[None, None, :]]


def calibration_coefficients(luma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """DCT of blocks of the decoded image on the grid shifted by (4, 4): an estimate of the
    coefficient distribution free of the current quantization (Fridrich's calibration)."""
    return block_dct(sample_blocks(luma[4:, 4:], CALIBRATION_BLOCKS, rng))


def box3(a: np.ndarray) -> np.ndarray:
    """Sum over each 3x3 neighbourhood (edges replicated), divided by 3."""
    p = np.pad(a, 1, mode="edge")
    return sum(p[i : i + a.shape[0], j : j + a.shape[1]] for i in range(3) for j in range(3)) / 3.0


def map_contrast(prob: np.ndarray, informative: np.ndarray) -> float:
    """Bimodality of a block map: the smaller group's share times the gap between groups."""
    vals = prob[informative]
    if vals.size < 8:
        return 0.0
    low, high = vals[vals < 0.5], vals[vals >= 0.5]
    if low.size == 0 or high.size == 0:
        return 0.0
    share = min(low.size, high.size) / vals.size
    return float(2.0 * share * (high.mean() - low.mean()))


# --- blocking grid and non-aligned double compression -------------------------------------


def blocking_grid(luma: np.ndarray) -> dict[str, Any]:
    """Fold the mean absolute neighbour difference modulo 8 in x and y (Fan & de Queiroz 2003).

    Returns the grid origin (row, column) where blocking is strongest, its peak-to-median
    strength in each direction, and the same strength measured at origin (0, 0). Blocking
    alone is a weak cue (textures also fold unevenly); a shifted origin is only reported as
    non-aligned compression when :func:`nonaligned_lattice` confirms it.
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
    return {
        "present": bool(max(sx, sy) >= _GRID_PRESENT),
        "origin": [(iy + 1) % 8, (ix + 1) % 8],
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


def nonaligned_lattice(luma: np.ndarray, origin: list[int], rng: np.random.Generator) -> dict[str, Any]:
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
    score, *control_scores = lattice_scores(luma, [(oy, ox), *controls], rng)
    baseline = max(float(np.median(control_scores)), 1.0)
    ratio = score / baseline
    return {
        "tested": True,
        "detected": bool(ratio >= NADQ_RATIO),
        "origin": [oy, ox],
        "lattice_score": round(score, 1),
        "control_median": round(baseline, 1),
        "ratio": round(ratio, 2),
    }


def strongest_shifted_lattice(luma: np.ndarray, rng: np.random.Generator, count: int = 256) -> list[int]:
    """The grid offset, shifted in both directions, whose DCT coefficients are most periodic
    (lattice score on ``count`` blocks per offset): the candidate origin of an earlier,
    non-aligned compression. The last compression's own blocking dominates the pixel-domain
    grid of :func:`blocking_grid`, so the earlier grid is searched in the DCT domain. Offsets
    with a zero row or column shift are left out: they stay aligned with the last grid in one
    direction and inherit its lattice (a camera original scores high there), so a crop along
    one axis only is not searched."""
    offsets = [(a, b) for a in range(1, 8) for b in range(1, 8)]
    scores = lattice_scores(luma, offsets, rng, count)
    return list(offsets[int(np.argmax(scores))])


def lattice_scores(luma: np.ndarray, offsets: list[tuple[int, int]], rng: np.random.Generator, count: int = _LATTICE_BLOCKS) -> list[float]:
    """Per grid offset, the sum over low frequencies of the best Rayleigh statistic
    ``n R^2`` over candidate steps (all offsets' sampled blocks go through one DCT)."""
    samples = [sample_blocks(luma[oy:, ox:], count, rng) for oy, ox in offsets]
    coefficients = block_dct(np.concatenate(samples)) if samples else np.zeros((0, 8, 8), np.float32)
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


# --- aligned double quantization -----------------------------------------------------------


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    result: MappingProxyType | None = None


_slots: "weakref.WeakKeyDictionary[DecodedImage, _Slot]" = weakref.WeakKeyDictionary()
_slots_lock = threading.Lock()


def aligned_double_quantization(image: DecodedImage) -> MappingProxyType:
    """The ADQ analysis of a JPEG's luminance (see :func:`_adq`), computed once per image.

    The result is read-only (a mapping proxy whose ``map`` array is not writeable), since
    several methods share it.
    """
    with _slots_lock:
        slot = _slots.setdefault(image, _Slot())
    with slot.lock:
        if slot.result is None:
            jpeg = image.jpeg
            if jpeg is None or not jpeg.coefficients:
                raise ValueError("aligned double quantization needs the JPEG's DCT coefficients")
            result = _adq(jpeg.coefficients[0], jpeg.table_for(0), image.luma)
            result["map"].setflags(write=False)
            slot.result = MappingProxyType(result)
        return slot.result


def prime(image: DecodedImage, result: Mapping[str, Any]) -> None:
    """Give ``image`` an ADQ result computed elsewhere (another process, on the same file), so
    :func:`aligned_double_quantization` returns it instead of computing it again."""
    with _slots_lock:
        slot = _slots.setdefault(image, _Slot())
    with slot.lock:
        if slot.result is None:
            values = dict(result)
            values["map"] = np.array(values["map"], dtype=np.float32)
            values["map"].setflags(write=False)
            slot.result = MappingProxyType(values)


def _histogram(values: np.ndarray) -> np.ndarray:
    """Counts of integer ``values`` clipped to [-_BINS, _BINS]; along the last axis when 2-D."""
    width = 2 * _BINS + 1
    idx = np.clip(values, -_BINS, _BINS).astype(np.int64) + _BINS
    if idx.ndim == 1:
        return np.bincount(idx, minlength=width).astype(np.float64)
    idx += (np.arange(idx.shape[0]) * width)[:, None]
    return np.bincount(idx.ravel(), minlength=width * idx.shape[0]).reshape(idx.shape[0], width).astype(np.float64)


def _adq(coefficients: np.ndarray, table: np.ndarray, luma: np.ndarray) -> dict[str, Any]:
    """Per-frequency primary step estimate and per-block double-compression probability.

    For each frequency the observed histogram of quantized coefficients is compared with
    simulated single-compression (``round(u / q2)``) and double-compression
    (``round((round(u / q1) * q1 + noise) / q2)``) histograms of the calibrated coefficients
    ``u``; the ``q1`` of highest likelihood wins. Frequencies whose gain over single
    compression exceeds ``_MIN_FREQUENCY_GAIN`` nats contribute their per-coefficient
    log-likelihood ratio to every block.
    """
    rng = np.random.default_rng(0)
    calib = calibration_coefficients(luma, rng)
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
    smoothed = box3(llr)
    prob_double = expit(smoothed)
    informative = np.abs(smoothed) > 1.0
    lacking = (prob_double < 0.5) & informative
    frac_lacking = float(lacking.sum() / max(int(informative.sum()), 1))
    contrast = map_contrast(prob_double, informative)
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
