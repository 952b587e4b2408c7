"""Is a camera RAW file's sensor data really sensor data, and does it match its own preview?

A raw file is the strongest original a photographer can show, so a forger may make one: take
a JPEG, undo its tone curve, scale its 8-bit values to the sensor's range and write them as
a colour-filter mosaic into a DNG. What a sensor records cannot be made that way. Four
measures, each a term in [0, 1] (0 = as a sensor records, 1 = as a forgery looks), all in
``details``:

1. **Code values used** (``code_gaps``). Each colour-filter channel of a sensor's 12-14 bit
   data uses nearly every code value in its range: shot noise spreads the values, so a
   histogram has no holes where it expects counts. Values scaled up from 8 bits (or through
   a gamma curve) occupy a few hundred codes with holes between them, the histogram combing
   of M. Stamm and K. J. R. Liu, "Forensic detection of image manipulation using statistical
   intrinsic fingerprints", IEEE TIFS 5(3), 2010. Measured below a quarter of the white
   level, where makers' lossy raw curves (which do leave holes in the highlights) are linear.
2. **The two greens** (``green_correlation``). A Bayer cell has two green photosites with
   independent noise; their high-pass residuals are uncorrelated in flat areas. Sites
   resampled from an RGB image share the interpolation and compression of their source
   (A. C. Popescu and H. Farid, "Exposing digital forgeries in color filter array
   interpolated images", IEEE TSP 53(10), 2005; M. Kirchner and T. Gloe, "Efficient
   estimation of CFA pattern configuration in digital camera images", SPIE 7541, 2010), so
   theirs correlate; exactly equal greens are the same cue at its extreme.
3. **Noise grows with brightness** (``shot_noise``). Raw data follows the Poissonian-Gaussian
   model var = a * mean + b (A. Foi, M. Trimeche, V. Katkovnik, K. Egiazarian, "Practical
   Poissonian-Gaussian noise modeling and fitting for single-image raw-data", IEEE TIP 17(10),
   2008): the noise variance of flat blocks, fitted against their mean, rises steeply from
   shadows to highlights. A JPEG's residual noise, smoothed by its compression, rises little.
4. **The preview** (``preview_mismatch``). The camera rendered its embedded JPEG preview from
   this sensor data: the preview's luma is a monotone function (the tone curve) of the raw's
   linear luminance binned to the preview's size. The function is fitted by isotonic
   regression (pool-adjacent-violators, R. E. Barlow et al., "Statistical inference under
   order restrictions", 1972) and its residual is the heatmap: an edit made in the raw or
   the preview alone, or a preview from another picture, leaves a large local residual.

The statistic is half the largest term plus half their mean: one clear cue counts, several
agreeing count more. No benchmark of forged raws exists to fit the score's logistic, so its
default stands (``fit_logistic`` False). Only 2x2 colour-filter patterns (Bayer) are examined;
X-Trans and linear (demosaiced) raws are reported as not applicable.
"""

from typing import Any, ClassVar

import cv2
import numpy as np

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage, luma_of
from forensics.methods.base import Method
from forensics.raw import RawData

#: Histogram bins (code values) expected to hold at least this many counts are checked for holes.
MIN_EXPECTED_COUNT = 4.0
#: Width of the moving average that gives each code value's expected count.
HISTOGRAM_SMOOTHING = 31
#: Side of the blocks (on a channel plane) for the noise and green measures.
BLOCK = 16
#: The flattest share of blocks (by the gradient of their smoothed content) that the noise measures use.
FLAT_SHARE = 0.4
#: The noise measures read at most about this many photosites per plane: bands of rows, evenly spaced
#: (a 24 MP sensor's 6 MP planes are thinned to a third; the statistics need far fewer blocks).
MAX_PLANE_PIXELS = 2_000_000
#: Rows per band of a thinned plane (a multiple of BLOCK, so that blocks never straddle bands).
BAND_ROWS = 128
#: The longest side at which the raw and its preview are compared.
PREVIEW_SIDE = 512
#: Term scales: the value of each measure that counts as fully sensor-like (0) and fully forged (1).
GAP_RANGE = (0.05, 0.40)
GREEN_RANGE = (0.15, 0.45)
#: The noise variance from darker (10th percentile) to brighter (90th) flat blocks: a sensor's rises
#: several-fold (shot noise), a forgery's hardly.
GROWTH_RANGE = (1.5, 4.0)
#: The 99th percentile of the smoothed |residual| of preview against raw, in 8-bit levels.
PREVIEW_RANGE = (12.0, 30.0)


def _term(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


class RawConsistency(Method):
    name: ClassVar[str] = "raw_consistency"
    version: ClassVar[str] = "1.0"
    applies_to: ClassVar[frozenset[ImageFormat]] = frozenset({ImageFormat.RAW})
    default_logistic: ClassVar[Logistic] = Logistic(center=0.4, scale=0.08)
    fit_logistic: ClassVar[bool] = False

    def examine(self, image: DecodedImage) -> Finding:
        raw = image.raw
        if raw is None:
            return self.error("The file was recognised as a camera raw but its sensor data was not decoded.")
        if raw.mosaic is None:
            return self.error(f"The raw sensor data cannot be examined: {raw.problem}.", {"problem": raw.problem})
        if raw.pattern.shape != (2, 2) or raw.mosaic.ndim != 2:
            return self.not_applicable(
                f"The sensor's colour-filter pattern ({raw.pattern.shape[0]}x{raw.pattern.shape[1] if raw.pattern.ndim == 2 else 0}) "
                "is not a 2x2 Bayer pattern; only Bayer raws are examined.",
                {"pattern_shape": list(raw.pattern.shape)},
            )
        planes = _planes(raw)
        gaps = _code_gaps(planes, raw)
        greens = _green_agreement(raw, planes)
        noise = _noise_growth(planes)
        preview, heatmap = _preview_residual(raw, planes)
        measures = {"code_gaps": gaps, "green_correlation": greens, "shot_noise": noise, "preview_mismatch": preview}
        terms = {key: m["term"] for key, m in measures.items() if m.get("term") is not None}
        if not terms:
            return self.not_applicable("The sensor data is too small or too uniform for any of the measures.", {"measures": measures})
        values = list(terms.values())
        statistic = 0.5 * max(values) + 0.5 * float(np.mean(values))
        strong = [key for key, value in terms.items() if value >= 0.5]
        label = "consistent" if statistic < self.default_logistic.center else "inconsistent"
        if strong:
            summary = "The raw data does not look like a sensor's: " + "; ".join(measures[key]["reason"] for key in strong) + "."
        else:
            summary = (
                "The raw data looks like a sensor's: every code value used, independent greens, shot noise, and it matches its preview."
            )
        details: dict[str, Any] = {"terms": terms, "measures": measures, "sensor_size": list(raw.sensor_size), "cfa": raw.color_desc}
        return self.ok(statistic, label, summary, details, heatmap=heatmap)


def _planes(raw: RawData) -> dict[str, np.ndarray]:
    """The four colour-filter planes (black level subtracted, float32), keyed ``R``, ``G1``, ``G2``, ``B``.

    LibRaw's ``color_desc`` names the indices of the pattern (``RGBG``: index 1 is the first
    green, 3 the second); the black level is per index.
    """
    mosaic = raw.mosaic
    assert mosaic is not None
    height, width = (mosaic.shape[0] // 2) * 2, (mosaic.shape[1] // 2) * 2
    planes: dict[str, np.ndarray] = {}
    greens = 0
    for dy in (0, 1):
        for dx in (0, 1):
            index = int(raw.pattern[dy, dx])
            colour = raw.color_desc[index] if index < len(raw.color_desc) else "?"
            black = raw.black_levels[index] if index < len(raw.black_levels) else 0
            if colour == "G":
                greens += 1
                colour = f"G{greens}"
            planes[colour] = mosaic[dy:height:2, dx:width:2].astype(np.float32) - black
    return planes


def _code_gaps(planes: dict[str, np.ndarray], raw: RawData) -> dict[str, Any]:
    """Share of code values with no count where the smoothed histogram expects several (per channel; the median)."""
    top = max(16, (raw.white_level - min(raw.black_levels or (0,))) // 4)
    per_channel: dict[str, float] = {}
    for key, plane in planes.items():
        values = plane[(plane >= 1) & (plane < top)].astype(np.int64)
        if values.size < 1000:
            continue
        counts = np.bincount(values, minlength=top).astype(np.float64)
        expected = np.convolve(counts, np.ones(HISTOGRAM_SMOOTHING) / HISTOGRAM_SMOOTHING, mode="same")
        checked = expected >= MIN_EXPECTED_COUNT
        if checked.sum() >= 32:
            per_channel[key] = float(np.mean(counts[checked] == 0))
    if not per_channel:
        return {"term": None, "reason": "too few values below a quarter of the white level"}
    gap = float(np.median(list(per_channel.values())))
    return {
        "term": _term(gap, GAP_RANGE),
        "empty_share": gap,
        "per_channel": per_channel,
        "reason": f"{gap:.0%} of the code values a sensor would use are empty (histogram combing, values scaled up from fewer bits)",
    }


def _thin(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(every k-th band of :data:`BAND_ROWS` rows of ``plane``, stacked; its residual, computed band by band
    so that no neighbourhood spans two bands) when ``plane`` has more than :data:`MAX_PLANE_PIXELS`."""
    step = int(np.ceil(plane.size / MAX_PLANE_PIXELS))
    bands = [plane[top : top + BAND_ROWS] for top in range(0, plane.shape[0] - BAND_ROWS + 1, BAND_ROWS * step)]
    if step <= 1 or not bands:
        return plane, _residual(plane)
    return np.concatenate(bands, axis=0), np.concatenate([_residual(band) for band in bands], axis=0)


def _residual(plane: np.ndarray) -> np.ndarray:
    """High-pass residual: the plane minus the mean of its four neighbours (its variance is 1.25 times the noise's)."""
    neighbours = cv2.filter2D(plane, -1, np.array([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]], np.float32), borderType=cv2.BORDER_REFLECT)
    return plane - neighbours


def _blocks(array: np.ndarray) -> np.ndarray:
    """(rows, cols, BLOCK*BLOCK) view-copy of ``array`` cut into whole blocks."""
    rows, cols = array.shape[0] // BLOCK, array.shape[1] // BLOCK
    return array[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2).reshape(rows, cols, -1)


def _flat_blocks(plane: np.ndarray) -> np.ndarray:
    """Boolean (rows, cols): blocks whose smoothed content has the least gradient (the flattest share)."""
    smooth = cv2.GaussianBlur(plane, (0, 0), 2.0)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    energy = _blocks(gx * gx + gy * gy).mean(axis=2)
    return energy <= np.quantile(energy, FLAT_SHARE)


def _green_agreement(raw: RawData, planes: dict[str, np.ndarray]) -> dict[str, Any]:
    if "G1" not in planes or "G2" not in planes:
        return {"term": None, "reason": "the pattern has not two greens"}
    (g1, res1), (g2, res2) = _thin(planes["G1"]), _thin(planes["G2"])
    if min(g1.shape) < 4 * BLOCK:
        return {"term": None, "reason": "too small"}
    identical = float(np.mean(g1 == g2))
    r1, r2 = _blocks(res1), _blocks(res2)
    flat = _flat_blocks((g1 + g2) / 2)
    a, b = r1[flat].astype(np.float64), r2[flat].astype(np.float64)
    correlation = float(np.sum(a * b) / max(np.sqrt(np.sum(a * a) * np.sum(b * b)), 1e-12))
    value = max(correlation, identical)
    return {
        "term": _term(value, GREEN_RANGE),
        "residual_correlation": correlation,
        "identical_share": identical,
        "reason": f"the two green channels' noise is correlated ({correlation:.2f}) or identical ({identical:.0%}), not independent",
    }


def _noise_growth(planes: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fit var = a * mean + b over flat blocks of every channel (Foi et al. 2008); the growth from dark to bright."""
    means, variances = [], []
    for full in planes.values():
        plane, residual = _thin(full)
        if min(plane.shape) < 4 * BLOCK:
            continue
        flat = _flat_blocks(plane)
        means.append(_blocks(plane).mean(axis=2)[flat])
        variances.append(_blocks(residual).var(axis=2)[flat] / 1.25)
    if not means:
        return {"term": None, "reason": "too small"}
    mean, var = np.concatenate(means), np.concatenate(variances)
    keep = mean > 0
    mean, var = mean[keep], var[keep]
    if mean.size < 40:
        return {"term": None, "reason": "too few flat blocks"}
    edges = np.quantile(mean, np.linspace(0, 1, 9))
    centres, levels = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (mean >= lo) & (mean <= hi)
        if inside.sum() >= 5:
            centres.append(float(np.median(mean[inside])))
            levels.append(float(np.quantile(var[inside], 0.25)))  # the lower quartile: texture only adds variance
    if len(centres) < 3:
        return {"term": None, "reason": "too few brightness levels"}
    slope, intercept = np.polyfit(centres, levels, 1)
    dark, bright = np.quantile(mean, 0.1), np.quantile(mean, 0.9)
    at_dark = max(float(slope * dark + intercept), 1e-6)
    at_bright = max(float(slope * bright + intercept), 1e-6)
    growth = at_bright / at_dark if slope > 0 else 1.0
    return {
        "term": 1.0 - _term(growth, GROWTH_RANGE),
        "slope": float(slope),
        "intercept": float(intercept),
        "growth": float(growth),
        "levels": [[c, v] for c, v in zip(centres, levels, strict=True)],
        "reason": f"the noise barely grows with brightness (variance x{growth:.1f} from shadows to highlights), unlike shot noise",
    }


def _isotonic(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit to ``y`` (pool-adjacent-violators)."""
    values, sizes, counts = [], [], []
    for value, weight in zip(y.tolist(), weights.tolist(), strict=True):
        values.append(value)
        sizes.append(weight)
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            w = sizes[-2] + sizes[-1]
            merged = (values[-2] * sizes[-2] + values[-1] * sizes[-1]) / w
            n = counts[-2] + counts[-1]
            del values[-1], sizes[-1], counts[-1]
            values[-1], sizes[-1], counts[-1] = merged, w, n
    return np.repeat(values, counts)


def _preview_residual(raw: RawData, planes: dict[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray | None]:
    if raw.preview is None:
        return {"term": None, "reason": f"no preview to compare ({raw.preview_problem})"}, None
    greens = [planes[k] for k in ("G1", "G2") if k in planes]
    green = greens[0] if len(greens) == 1 else (greens[0] + greens[1]) / 2
    channels = np.stack([planes.get("R", green), green, planes.get("B", green)], axis=2)
    luma = luma_of(raw.preview)
    scale = PREVIEW_SIDE / max(luma.shape)
    size = (max(8, round(luma.shape[1] * scale)), max(8, round(luma.shape[0] * scale))) if scale < 1 else (luma.shape[1], luma.shape[0])
    target = cv2.resize(luma, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    best: tuple[float, np.ndarray, int] | None = None
    for turns in range(4):
        turned = np.rot90(channels, turns)
        if abs(turned.shape[1] / turned.shape[0] - size[0] / size[1]) > 0.05 * size[0] / size[1]:
            continue
        source = _luminance(cv2.resize(np.ascontiguousarray(turned), size, interpolation=cv2.INTER_AREA).astype(np.float64), target)
        residual = _tone_residual(source, target)
        level = float(np.mean(np.abs(residual)))
        if best is None or level < best[0]:
            best = (level, residual, turns)
    if best is None:
        return {"term": None, "reason": f"the preview's shape {luma.shape[1]}x{luma.shape[0]} does not match the sensor's"}, None
    level, residual, turns = best
    smoothed = cv2.GaussianBlur(np.abs(residual).astype(np.float32), (0, 0), 3.0)
    peak = float(np.quantile(smoothed, 0.99))
    return {
        "term": _term(peak, PREVIEW_RANGE),
        "mean_abs_residual": level,
        "p99_local_residual": peak,
        "rotation_quarter_turns": turns,
        "reason": f"the embedded preview departs from the sensor data by up to {peak:.0f} levels beyond its tone curve",
    }, smoothed / PREVIEW_RANGE[1]


def _srgb_decode(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, np.power((encoded + 0.055) / 1.055, 2.4))


def _luminance(channels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The raw's linear luminance as the camera weighed it: the mix of its R, G, B planes that best
    predicts the preview's luma in linear light (least squares), which absorbs the white balance
    and the luminance row of the colour matrix, neither of which the file need state."""
    flat = channels.reshape(-1, 3)
    weights, *_ = np.linalg.lstsq(flat, _srgb_decode(target.ravel() / 255.0), rcond=None)
    return (flat @ weights).reshape(target.shape)


def _tone_residual(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``target`` minus the monotone function of ``source`` that best fits it (fitted on 256 quantile bins)."""
    x, y = source.ravel(), target.ravel()
    order = np.argsort(x, kind="stable")
    bins = np.array_split(order, min(256, x.size))
    centres = np.array([x[b].mean() for b in bins])
    means = np.array([y[b].mean() for b in bins])
    fitted = _isotonic(means, np.array([len(b) for b in bins], np.float64))
    curve = np.interp(x, centres, fitted)
    return (y - curve).reshape(target.shape)
