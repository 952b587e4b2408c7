"""Compare two images: identical bytes, identical pixels, structural similarity and perceptual hashes.

SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) on luminance at a common working
size; perceptual hashes (DCT pHash and difference hash, Zauner 2010) via ``imagehash``:
a Hamming distance of 0-8 of 64 bits means the same picture after re-encoding or resizing. A
difference map shows where two pictures differ, for the web page's comparison of stored images.
"""

import uuid
from dataclasses import dataclass
from typing import Any

import cv2
import imagehash
import numpy as np
from PIL import Image as PILImage
from skimage.metrics import structural_similarity
from sqlalchemy.orm import Session

from forensics import DecodedImage, load_image
from service import cases
from service.errors import NotFound
from service.models import Image
from service.settings import Settings
from service.storage import Storage

#: Long side both images are brought to before SSIM.
WORK_SIDE = 1024
#: pHash distance at or below which two images show the same picture.
SAME_PICTURE_DISTANCE = 8


def compare_images(a: DecodedImage, b: DecodedImage) -> dict[str, Any]:
    identical_bytes = a.sha256 == b.sha256
    identical_pixels = identical_bytes or (a.rgb.shape == b.rgb.shape and bool(np.array_equal(a.rgb, b.rgb)))
    pil_a, pil_b = PILImage.fromarray(a.rgb), PILImage.fromarray(b.rgb)
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


def difference_map(a: DecodedImage, b: DecodedImage) -> tuple[np.ndarray, int]:
    """Where the two pictures differ: the absolute luminance difference at the SSIM's working size,
    scaled so that the largest difference is 1 (float32 in [0, 1], the maps' convention), and
    that largest difference in levels of 255 (0: the same luminance everywhere)."""
    x, y = _common_size(a.luma, b.luma)
    difference = np.abs(x - y)
    largest = float(difference.max())
    return (difference / largest if largest > 0 else difference).astype(np.float32), round(largest)


def _ssim(luma_a: np.ndarray, luma_b: np.ndarray) -> float:
    x, y = _common_size(luma_a, luma_b)
    return float(structural_similarity(x, y, data_range=255.0))


def _common_size(luma_a: np.ndarray, luma_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two luminance planes at a shared size (the first image's aspect, long side <= WORK_SIDE)."""
    h, w = luma_a.shape
    factor = min(1.0, WORK_SIDE / max(h, w))
    size = (max(7, round(w * factor)), max(7, round(h * factor)))
    return cv2.resize(luma_a, size, interpolation=cv2.INTER_AREA), cv2.resize(luma_b, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class CaseComparison:
    """Two of a tenant's stored images compared: the measurements of :func:`compare_images` and
    the :func:`difference_map` with its largest difference."""

    first: Image
    second: Image
    result: dict[str, Any]
    difference: np.ndarray
    largest: int


def compare_case_images(
    session: Session, storage: Storage, settings: Settings, tenant_id: uuid.UUID, first: tuple[uuid.UUID, uuid.UUID],
    second: tuple[uuid.UUID, uuid.UUID],
) -> CaseComparison:
    """Compare two stored images, each named by (case id, image id) and each the tenant's (else
    :class:`NotFound`), decoded from their originals as the worker decodes them."""
    rows = [cases.get_image(session, tenant_id, case_id, image_id) for case_id, image_id in (first, second)]
    decoded = []
    for row in rows:
        if row.storage_key is None:
            raise NotFound(f"image {row.id} has no stored original")
        decoded.append(load_image(storage.get_bytes(row.storage_key), filename=row.filename, max_pixels=settings.max_pixels,
                                  max_bytes=settings.max_file_bytes))
    return CaseComparison(rows[0], rows[1], compare_images(*decoded), *difference_map(*decoded))
