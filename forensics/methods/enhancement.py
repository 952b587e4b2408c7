"""Enhancement views for the image dossier: pictures that help a person look, with no score.

An analyst reading an image looks for what the eye misses at normal contrast: shadows with
hidden detail, edges that stop abruptly at a pasted region, blocks whose texture differs
from their neighbours. This method offers those views; it measures nothing and therefore
returns :meth:`Method.views_only` (score None), which fusion ignores.

Views (uint8 grey, long side at most 2048 px, except the block map):

* ``equalized`` - contrast-limited adaptive histogram equalisation of the luminance
  (K. Zuiderveld, "Contrast limited adaptive histogram equalization", Graphics Gems IV, 1994).
* ``edges`` - Sobel gradient magnitude of the luminance (I. Sobel, G. Feldman, 1968).
* ``local_contrast`` - local standard deviation of the luminance in a 7x7 window.
* ``block_ac_energy`` - the AC energy of every 8x8 block (log scale), one pixel per block of the
  full-resolution grid (never resampled). By Parseval's theorem
  for the orthonormal 8x8 DCT this is the block's sum of squared deviations from its mean,
  so it is computed in the pixel domain; it matches the JPEG block grid when the image is a
  JPEG and shows blocks whose detail level differs from their surroundings.

``details["histogram"]`` holds the 256-bin histograms of R, G, B and luminance.
"""

import math
from typing import Any, ClassVar

import cv2
import numpy as np

from forensics.finding import Finding
from forensics.image import DecodedImage
from forensics.methods.base import Method
from forensics.resample import display_size, shrink

MAX_SIDE = 2048
BLOCK = 8
#: RGB histograms are counted on a regular pixel sample of about this size (luma on all pixels).
HISTOGRAM_PIXELS = 4_000_000


class Enhancement(Method):
    name: ClassVar[str] = "enhancement"
    version: ClassVar[str] = "1.0"
    cost_seconds: ClassVar[float] = 0.15

    def examine(self, image: DecodedImage) -> Finding:
        gray_full = cv2.cvtColor(np.ascontiguousarray(image.rgb), cv2.COLOR_RGB2GRAY)
        # RGB histograms from every step-th pixel in each direction (exact up to 4 MP); luma from all pixels.
        step = max(1, math.ceil(math.sqrt(image.width * image.height / HISTOGRAM_PIXELS)))
        sample = np.ascontiguousarray(image.rgb[::step, ::step])
        histogram = {
            name: cv2.calcHist([sample], [c], None, [256], [0, 256]).ravel().astype(int).tolist()
            for c, name in enumerate(("red", "green", "blue"))
        }
        histogram["luma"] = cv2.calcHist([gray_full], [0], None, [256], [0, 256]).ravel().astype(int).tolist()

        size = display_size(image.width, image.height, MAX_SIDE)
        gray = shrink(gray_full, size)

        equalized = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)
        g = gray.astype(np.float32)
        magnitude = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
        mean = cv2.blur(g, (7, 7))
        local_std = np.sqrt(np.maximum(cv2.blur(g * g, (7, 7)) - mean * mean, 0.0))

        views = {
            "equalized": equalized,
            "edges": _stretch(magnitude),
            "local_contrast": _stretch(local_std),
        }
        block_map = _block_ac_energy(gray_full)
        if block_map is not None:
            views["block_ac_energy"] = _stretch(np.log1p(block_map))
        pixels = image.width * image.height
        details: dict[str, Any] = {
            "histogram": histogram,
            "histogram_rgb_sample_step": step,
            "view_size": list(size),
            "block_map_blocks": None if block_map is None else [int(block_map.shape[1]), int(block_map.shape[0])],
            "clipped_shadows_fraction": round(histogram["luma"][0] / pixels, 6),
            "clipped_highlights_fraction": round(histogram["luma"][255] / pixels, 6),
        }
        return self.views_only(
            "Enhancement views (equalised luminance, edges, local contrast, 8x8 block energy) and histograms to help "
            "visual inspection; they carry no score.",
            details,
            views,
        )


def _block_ac_energy(gray: np.ndarray) -> np.ndarray | None:
    """Sum of squared deviations from the block mean for each full 8x8 block (= DCT AC energy)."""
    rows, cols = gray.shape[0] // BLOCK, gray.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        return None
    # Sums of each row's 8-pixel runs, then of 8 runs down: exact integers, and no full-size
    # float copy of the picture (at 24 MP that copy, not the arithmetic, took most of the time).
    runs = np.ascontiguousarray(gray[: rows * BLOCK, : cols * BLOCK]).reshape(-1, BLOCK)
    total, squares = (
        cv2.reduce(runs, 1, kind, dtype=cv2.CV_32S).reshape(rows, BLOCK, cols).sum(axis=1, dtype=np.int64)
        for kind in (cv2.REDUCE_SUM, cv2.REDUCE_SUM2)
    )
    return ((squares * (BLOCK * BLOCK) - total * total) / (BLOCK * BLOCK)).astype(np.float32)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map to uint8 with the 99.5th percentile at white (robust to a few extreme pixels)."""
    sample = values[:: max(1, values.shape[0] // 256), :: max(1, values.shape[1] // 256)]
    top = float(np.percentile(sample, 99.5))
    if top <= 0:
        return np.zeros(values.shape, np.uint8)
    return np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
