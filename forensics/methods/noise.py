"""Local noise inconsistency: a region whose noise level differs from the rest of the image.

Why: a camera leaves sensor noise of a level set by the sensor, ISO and processing, roughly
uniform over one photo once brightness is allowed for; a region pasted from another photo,
or smoothed/retouched, carries another noise level. Mahdian & Saic ("Using noise
inconsistencies for blind image forensics", Image and Vision Computing 27, 2009) estimate
the noise per block from the finest diagonal wavelet subband with the robust median
estimator of Donoho & Johnstone (sigma = median(|HH|) / 0.6745) and look for blocks whose
level differs; Lyu, Pan & Zhang ("Exposing region splicing forgeries with blind local noise
estimation", IJCV 110, 2014) make the local estimate the basis of splicing localization.

The block level also rises with texture and edges (they leak into HH) and falls in dark or
saturated areas. So this implementation excludes clipped and very dark/bright blocks, fits
the log noise level per image on brightness and texture (the level of the horizontal and
vertical detail subbands) with a robust quadratic regression, and keeps the residual: the
part of a block's noise that its brightness and texture do not explain. The residual is
pooled over 3x3 neighbouring blocks (a tampered region is spatially coherent, estimation
noise is not), turned into robust z-scores, and the statistic is the fraction of measurable
blocks with ``|z| > 3``. JPEG compression removes much of the finest noise, so on strongly
compressed files this measures the compression as much as the sensor.
"""

import math
from typing import Any

import cv2
import numpy as np

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.image import DecodedImage
from forensics.methods.base import Method
from forensics.robust import MAD_TO_SIGMA, robust_z

#: Smallest image side (pixels) the method works on.
MIN_SIDE = 64
#: Target number of blocks along the short side (blocks are at least 16 pixels).
BLOCKS_ON_SHORT_SIDE = 40
#: About at most this many HH coefficients per block enter the median (every n-th row pair beyond it).
MAX_BLOCK_SAMPLES = 1024
#: Blocks darker or brighter than these mean levels, or with clipped pixels, are not measured.
DARK, BRIGHT = 16.0, 239.0
MAX_CLIPPED = 0.05
#: Blocks whose texture exceeds this multiple of the median texture (or noise) are not measured.
MAX_TEXTURE = 2.0
#: Minimum number of measurable blocks.
MIN_BLOCKS = 24
#: Robust z beyond which a block counts as inconsistent.
Z_THRESHOLD = 3.0
#: Floor of the robust spread of pooled residuals (log units).
MIN_SPREAD = 0.05
#: Images whose median block noise (grey levels) is below this are too flat to measure.
MIN_NOISE = 0.05

_MAD_TO_SIGMA = 1.0 / 0.6745


def block_noise(luma: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Per block: noise sigma (median |HH|), texture (LH/HL level beyond the noise), mean brightness, clipped fraction.

    One level of the orthonormal Haar transform is computed on every ``step``-th pair of
    rows only, so that at most about ``MAX_BLOCK_SAMPLES`` HH coefficients per block enter
    the median; the pixels are never resampled.
    """
    size = max(8, round(min(luma.shape) / 2 / BLOCKS_ON_SHORT_SIDE))
    step = max(1, math.ceil(size * size / MAX_BLOCK_SAMPLES))
    rows, cols = luma.shape[0] // (2 * size), luma.shape[1] // (2 * size)
    px = 2 * size
    pairs = luma[: rows * px, : cols * px].reshape(rows * size, 2, cols * px)[::step]
    a, b = pairs[:, 0, 0::2], pairs[:, 0, 1::2]
    c, d = pairs[:, 1, 0::2], pairs[:, 1, 1::2]
    per_block = pairs.shape[0] // rows

    def blocks(band: np.ndarray) -> np.ndarray:
        view = np.abs(band[: rows * per_block]).reshape(rows, per_block, cols, size)
        return view.transpose(0, 2, 1, 3).reshape(rows, cols, -1)

    sigma = np.median(blocks((a - b - c + d) * 0.5), axis=2) * _MAD_TO_SIGMA
    detail = np.concatenate([blocks((a + b - c - d) * 0.5), blocks((a - b + c - d) * 0.5)], axis=2)
    # Noise is white, so it is as strong in LH/HL as in HH: texture is the detail level in
    # excess of the noise, else a noisier region would look "textured" and be explained away.
    detail_sigma = np.median(detail, axis=2) * _MAD_TO_SIGMA
    texture = np.sqrt(np.maximum(detail_sigma * detail_sigma - sigma * sigma, 0.0))
    area = (cols, rows)
    brightness = cv2.resize(luma[: rows * px, : cols * px], area, interpolation=cv2.INTER_AREA)
    # 255 where any channel is at 0 or 255
    clipped_px = cv2.bitwise_not(cv2.inRange(rgb[: rows * px, : cols * px], (1, 1, 1), (254, 254, 254)))
    clipped = cv2.resize(clipped_px, area, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return {"sigma": sigma, "texture": texture, "brightness": brightness, "clipped": clipped, "block_pixels": np.array(px)}


def explained_residual(sigma: np.ndarray, texture: np.ndarray, brightness: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """log sigma minus its robust quadratic fit on brightness and log texture (fit on ``valid`` blocks)."""
    y = np.log(sigma + 0.1)
    t = np.log(texture + 0.1)
    m = brightness / 255.0
    features = np.stack([np.ones_like(t), m, m * m, t, t * t, m * t], axis=-1).astype(np.float64)
    x, target = features[valid], y[valid].astype(np.float64)
    keep = np.ones(target.shape, dtype=bool)
    beta = np.zeros(features.shape[-1])
    for _ in range(3):
        beta, *_ = np.linalg.lstsq(x[keep], target[keep], rcond=None)
        error = target - x @ beta
        keep = np.abs(error) <= 2.5 * MAD_TO_SIGMA * float(np.median(np.abs(error))) + 1e-6
    return (y - features @ beta).astype(np.float32), [float(v) for v in beta]


class NoiseInconsistency(Method):
    name = "noise"
    version = "1.0"
    cost_seconds = 0.12
    default_logistic = Logistic(center=0.065, scale=0.02)

    def examine(self, image: DecodedImage) -> Finding:
        if min(image.width, image.height) < MIN_SIDE:
            return self.not_applicable(f"The image is smaller than {MIN_SIDE} pixels on a side; too small to compare noise levels.")
        measured = block_noise(image.luma, image.rgb)
        sigma, texture, brightness = measured["sigma"], measured["texture"], measured["brightness"]
        valid = (brightness >= DARK) & (brightness <= BRIGHT) & (measured["clipped"] <= MAX_CLIPPED)
        count = int(np.count_nonzero(valid))
        details: dict[str, Any] = {
            "block_pixels": int(measured["block_pixels"]),
            "blocks": [int(v) for v in sigma.shape],
            "measurable_blocks": count,
        }
        if count < MIN_BLOCKS:
            return self.not_applicable("Too few blocks are neither too dark, too bright nor clipped to compare noise levels.", details)
        median_sigma = float(np.median(sigma[valid]))
        details["median_noise_sigma"] = round(median_sigma, 4)
        if median_sigma < MIN_NOISE:
            return self.not_applicable("The image is too flat (almost no pixel noise) to compare noise levels.", details)
        # Edges leak into HH however the fit is done: leave the most textured blocks out.
        valid &= texture <= MAX_TEXTURE * max(float(np.median(texture[valid])), median_sigma)
        count = int(np.count_nonzero(valid))
        details["measurable_blocks"] = count
        if count < MIN_BLOCKS:
            return self.not_applicable("Too few blocks are smooth enough to compare noise levels.", details)
        residual, beta = explained_residual(sigma, texture, brightness, valid)
        weight = valid.astype(np.float32)
        pooled_sum = cv2.boxFilter(residual * weight, -1, (3, 3), normalize=False, borderType=cv2.BORDER_REFLECT)
        pooled_count = cv2.boxFilter(weight, -1, (3, 3), normalize=False, borderType=cv2.BORDER_REFLECT)
        pooled = pooled_sum / np.maximum(pooled_count, 1.0)
        z, _, spread = robust_z(pooled, valid, min_spread=MIN_SPREAD)
        fraction = float(np.count_nonzero(np.abs(z) > Z_THRESHOLD)) / count
        higher = float(np.count_nonzero(z > Z_THRESHOLD)) / count
        details.update(
            outlier_fraction=round(fraction, 4),
            noisier_fraction=round(higher, 4),
            smoother_fraction=round(fraction - higher, 4),
            residual_spread=round(spread, 4),
            fit_coefficients=[round(v, 4) for v in beta],
        )
        heatmap = np.clip(np.abs(z) / (2 * Z_THRESHOLD), 0.0, 1.0).astype(np.float32)
        label = "inconsistent noise" if fraction >= self.logistic.center else "consistent noise"
        summary = (
            f"{fraction:.1%} of the measurable image areas have a noise level that their brightness and texture "
            "do not explain and that differs from the rest of the image."
        )
        return self.ok(fraction, label, summary, details, heatmap=heatmap)
