"""Compare two images: identical bytes, identical pixels, structural similarity and perceptual hashes.

SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) on luminance at a common working
size; perceptual hashes (DCT pHash and difference hash, Zauner 2010) via ``imagehash``:
a Hamming distance of 0-8 of 64 bits means the same picture after re-encoding or resizing.
"""

from typing import Any

import cv2
import imagehash
import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from forensics import DecodedImage

#: Long side both images are brought to before SSIM.
WORK_SIDE = 1024
#: pHash distance at or below which two images show the same picture.
SAME_PICTURE_DISTANCE = 8


def compare_images(a: DecodedImage, b: DecodedImage) -> dict[str, Any]:
    identical_bytes = a.sha256 == b.sha256
    identical_pixels = identical_bytes or (a.rgb.shape == b.rgb.shape and bool(np.array_equal(a.rgb, b.rgb)))
    pil_a, pil_b = Image.fromarray(a.rgb), Image.fromarray(b.rgb)
    phash = int(imagehash.phash(pil_a) - imagehash.phash(pil_b))
    dhash = int(imagehash.dhash(pil_a) - imagehash.dhash(pil_b))
    return {
        "identical": identical_bytes or identical_pixels,
        "identical_bytes": identical_bytes,
        "identical_pixels": identical_pixels,
        "same_dimensions": (a.width, a.height) == (b.width, b.height),
        "ssim": round(_ssim(a.luma, b.luma), 4),
        "phash_distance": phash,
        "dhash_distance": dhash,
        "same_picture": phash <= SAME_PICTURE_DISTANCE,
    }


def _ssim(luma_a: np.ndarray, luma_b: np.ndarray) -> float:
    """SSIM of the two luminance planes at a shared size (the first image's aspect, long side <= WORK_SIDE)."""
    h, w = luma_a.shape
    factor = min(1.0, WORK_SIDE / max(h, w))
    size = (max(7, round(w * factor)), max(7, round(h * factor)))
    x = cv2.resize(luma_a, size, interpolation=cv2.INTER_AREA)
    y = cv2.resize(luma_b, size, interpolation=cv2.INTER_AREA)
    return float(structural_similarity(x, y, data_range=255.0))
