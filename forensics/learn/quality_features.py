"""The input of the image-quality model: blur, noise and compression measures of the luma.

Why a feature vector and not pixels: quality is a question about acquisition and storage
(how sharp, how noisy, how compressed), which a handful of classic no-reference measures
answer independently of what the photo shows, and a small network on them trains in
minutes on a CPU and runs in microseconds. The measures:

* **Sharpness across scales**: the variance of the Laplacian (the focus measure of
  Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative study",
  ICPR 2000) at full, half and quarter size after box (area) downscaling, each divided by
  the tile's variance so that contrast cancels out. A blurred photo loses its fine-scale
  energy first: the full-size ratio falls relative to the coarser ones.
* **Edge width** at the strongest edges (local maxima of the gradient): the contrast around
  the edge divided by its steepest slope, which for a step blurred by a Gaussian of
  sigma ``s`` is ``s * sqrt(2 pi)`` (about 2 px for a perfectly sharp step under the Sobel
  derivative). This is the edge-spread idea of Marziliano, Dufaux, Winkler & Ebrahimi
  ("A no-reference perceptual blur metric", ICIP 2002) without tracing each edge.
* **Noise sigma** in two independent ways: Immerkaer's fast estimator ("Fast noise variance
  estimation", CVIU 64(2), 1996: a mask that cancels first- and second-order structure,
  ``sigma = sqrt(pi/2) / 6 * mean |I * N|``), on the pixels that are not edges as Tai & Yang
  suggest ("A fast method for image noise estimation using Laplacian operator and adaptive
  edge detection", ISCCSP 2008); and Donoho's robust median of the diagonal Haar detail
  (``median |HH| / 0.6745``; Donoho & Johnstone, "Ideal spatial adaptation by wavelet
  shrinkage", Biometrika 1994). Each is the median over the tiles that are neither flat nor clipped (a camera JPEG
  quantizes the noise of a flat sky away entirely).
* **JPEG blockiness**: the mean luma step across the 8x8 grid's boundaries over the mean step
  inside blocks (the boundary/inside difference measure of Wang, Bovik & Evans, "Blind
  measurement of blocking artifacts in images", ICIP 2000).
* For JPEG files, the **mean step of the luma quantization table** (how coarsely the file was
  stored, whatever the encoder called its quality).

All of it is measured on at most 4x4 tiles of :data:`TILE` px spread over the image at its
stored resolution, their corners on the 8x8 grid, so a 24 MP photo costs what a 0.5 MP one
does (a few milliseconds) and the training crops (512 px) and whole photos are measured alike.
The same function prepares training data and inference input, so the two cannot drift.
"""

import math

import cv2
import numpy as np

#: Side of one measured tile, and how many tiles at most per axis.
TILE = 128
GRID = 4
#: Smallest side the measures make sense on (the quarter-size Laplacian needs 16 px).
MIN_SIDE = 64
#: Names of the feature vector's entries, in order (stored in the model card and checked at load).
FEATURE_NAMES: tuple[str, ...] = (
    "log_laplacian_ratio_1",
    "log_laplacian_ratio_2",
    "log_laplacian_ratio_4",
    "log_edge_width_median",
    "log_edge_width_p25",
    "log_noise_immerkaer",
    "log_noise_haar",
    "log_blockiness",
    "log_contrast",
    "is_jpeg",
    "log_quant_step",
)
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_HAAR_TO_SIGMA = 1.0 / 0.6745
#: Minimum contrast (grey levels) around an edge for its width to be measured.
_EDGE_CONTRAST = 20.0
#: Window (px) over which an edge's contrast is taken: wide enough for a sigma-4 blur.
_EDGE_WINDOW = 13
#: Edge width assumed where a tile has no measurable edge (an uninformative, blurred-ish value).
_NO_EDGE_WIDTH = 6.0
#: A tile whose standard deviation is below this is flat (sky, wall): its sharpness ratios are noise.
_FLAT_STD = 3.0


def tile_origins(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners of up to GRID x GRID tiles spread evenly, on multiples of 8."""

    def axis(size: int) -> list[int]:
        count = max(1, min(GRID, size // tile))
        if count == 1:
            return [((size - tile) // 2) // 8 * 8]
        return [(i * (size - tile) // (count - 1)) // 8 * 8 for i in range(count)]

    return [(top, left) for top in axis(height) for left in axis(width)]


def _laplacian_ratio(tile: np.ndarray, factor: int) -> float:
    if factor > 1:
        side = tile.shape[0] // factor
        tile = cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA)
    lap = cv2.Laplacian(tile, cv2.CV_32F, ksize=1)[1:-1, 1:-1]
    return float(np.log((lap.var() + 1e-2) / (tile.var() + 1e-2)))


def _edge_widths(tile: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Width (px) of each edge pixel that is a local gradient maximum with enough contrast."""
    magnitude = np.hypot(gx, gy)
    kernel = np.ones((_EDGE_WINDOW, _EDGE_WINDOW), np.uint8)
    contrast = cv2.dilate(tile, kernel) - cv2.erode(tile, kernel)
    peak = magnitude >= cv2.dilate(magnitude, np.ones((3, 3), np.uint8))
    m = _EDGE_WINDOW // 2
    inner = np.zeros_like(peak)
    inner[m:-m, m:-m] = True
    strong = peak & inner & (contrast >= _EDGE_CONTRAST) & (magnitude > 0.5)
    if not strong.any():
        return np.empty(0, np.float32)
    level = np.percentile(magnitude[strong], 50)
    chosen = strong & (magnitude >= level)
    return (contrast[chosen] / magnitude[chosen]).astype(np.float32)


def _noise(tile: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> tuple[float, float]:
    """(Immerkaer sigma on non-edge pixels, Donoho's Haar-HH sigma) of one tile."""
    response = np.abs(cv2.filter2D(tile, cv2.CV_32F, _IMMERKAER)[1:-1, 1:-1])
    magnitude = np.hypot(gx, gy)[1:-1, 1:-1]
    calm = magnitude <= np.percentile(magnitude, 90)
    immerkaer = math.sqrt(math.pi / 2.0) / 6.0 * float(response[calm].mean())
    h, w = tile.shape[0] // 2 * 2, tile.shape[1] // 2 * 2
    t = tile[:h, :w]
    hh = (t[0::2, 0::2] - t[0::2, 1::2] - t[1::2, 0::2] + t[1::2, 1::2]) / 2.0
    haar = float(np.median(np.abs(hh))) * _HAAR_TO_SIGMA
    return immerkaer, haar


def _blocking(tile: np.ndarray) -> tuple[float, float]:
    """Sum of absolute steps across 8x8 boundaries and inside blocks (horizontal + vertical), per step."""
    across = inside = 0.0
    n_across = n_inside = 0
    for diff in (np.abs(np.diff(tile, axis=1)), np.abs(np.diff(tile, axis=0)).T):
        boundary = (np.arange(diff.shape[1]) % 8) == 7
        across += float(diff[:, boundary].sum())
        inside += float(diff[:, ~boundary].sum())
        n_across += int(boundary.sum()) * diff.shape[0]
        n_inside += int((~boundary).sum()) * diff.shape[0]
    return across / max(n_across, 1), inside / max(n_inside, 1)


def quality_features(luma: np.ndarray, quant_table: np.ndarray | None = None) -> np.ndarray:
    """The float32 vector named by :data:`FEATURE_NAMES` for a luma plane (0-255) and, for a JPEG, its luma table.

    Raises ``ValueError`` for an image under :data:`MIN_SIDE` px a side.
    """
    height, width = luma.shape
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"the image is {width}x{height} px; quality needs at least {MIN_SIDE} px a side")
    tile = min(TILE, min(height, width) // 8 * 8)
    ratios, stds, widths, noises, across, inside = [], [], [], [], [], []
    for top, left in tile_origins(height, width, tile):
        t = np.ascontiguousarray(luma[top : top + tile, left : left + tile], dtype=np.float32)
        gx = cv2.Sobel(t, cv2.CV_32F, 1, 0, ksize=3) / 8.0
        gy = cv2.Sobel(t, cv2.CV_32F, 0, 1, ksize=3) / 8.0
        stds.append(float(t.std()))
        ratios.append([_laplacian_ratio(t, f) for f in (1, 2, 4)])
        widths.append(_edge_widths(t, gx, gy))
        clipped = float(((t <= 2) | (t >= 253)).mean())
        noises.append((*_noise(t, gx, gy), clipped))
        a, i = _blocking(t)
        across.append(a)
        inside.append(i)
    std = np.asarray(stds)
    textured = std >= _FLAT_STD
    ratio = np.asarray(ratios)[textured] if textured.any() else np.asarray(ratios)
    sharp = np.percentile(ratio, 75, axis=0)
    pooled = np.concatenate(widths)
    width_median = float(np.median(pooled)) if pooled.size >= 8 else _NO_EDGE_WIDTH
    width_p25 = float(np.percentile(pooled, 25)) if pooled.size >= 8 else _NO_EDGE_WIDTH
    noise = np.asarray(noises)
    usable = (noise[:, 2] < 0.5) & textured
    noise = noise[usable] if usable.any() else noise
    immerkaer = float(np.median(noise[:, 0]))
    haar = float(np.median(noise[:, 1]))
    blockiness = (float(np.mean(across)) + 0.05) / (float(np.mean(inside)) + 0.05)
    is_jpeg = quant_table is not None
    step = float(np.mean(quant_table)) if is_jpeg else 1.0
    return np.array(
        [
            *sharp,
            math.log(width_median),
            math.log(width_p25),
            math.log1p(immerkaer),
            math.log1p(haar),
            math.log(blockiness),
            math.log1p(float(np.median(std))),
            float(is_jpeg),
            math.log(max(step, 1.0)),
        ],
        np.float32,
    )


def blur_sigma_from_width(width: float) -> float:
    """The Gaussian sigma (px) of a blurred step whose measured width is ``width`` (a sharp step reads about 2 px)."""
    return math.sqrt(max(width * width - 4.0, 0.0)) / math.sqrt(2.0 * math.pi)


def describe(features: np.ndarray) -> dict[str, float | None]:
    """The features as named, rounded measurements for a report (widths and sigmas back in px and grey levels)."""
    named = dict(zip(FEATURE_NAMES, (float(v) for v in features), strict=True))
    width = math.exp(named["log_edge_width_median"])
    return {
        "edge_width_px": round(width, 2),
        "blur_sigma_px": round(blur_sigma_from_width(width), 2),
        "noise_sigma": round(math.expm1(named["log_noise_immerkaer"]), 2),
        "noise_sigma_haar": round(math.expm1(named["log_noise_haar"]), 2),
        "blockiness": round(math.exp(named["log_blockiness"]), 3),
        "quant_step_mean": round(math.exp(named["log_quant_step"]), 2) if named["is_jpeg"] else None,
    }
