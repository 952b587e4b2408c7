"""Standard JPEG quantization tables, IJG quality scaling, and quality estimation.

Why: the quantization tables an encoder wrote say which software (or camera firmware)
encoded the file and at which quality. libjpeg (the Independent JPEG Group library, and
every tool built on it: Pillow, ImageMagick, GIMP, most web services) derives its tables by
scaling the example tables of the JPEG standard (ITU-T T.81 | ISO/IEC 10918-1, 1992,
Annex K, tables K.1 and K.2) with the IJG quality formula. Matching a file's table against
the 100 scaled tables gives its IJG quality and tells an IJG-made table from a custom one
(camera makers and some editors write their own tables).

Tables here are 8x8 in natural (row, column) order, as :class:`forensics.image.JpegData`
stores them. The module is deliberately free of any method logic so that other methods
(e.g. provenance by quantization table) can reuse it.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: ITU-T T.81 Annex K, table K.1: luminance quantization table (natural order).
ANNEX_K_LUMINANCE: np.ndarray = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int32,
)

#: ITU-T T.81 Annex K, table K.2: chrominance quantization table (natural order).
ANNEX_K_CHROMINANCE: np.ndarray = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ],
    dtype=np.int32,
)
ANNEX_K_LUMINANCE.setflags(write=False)
ANNEX_K_CHROMINANCE.setflags(write=False)

#: Zig-zag scan order: ``ZIGZAG[k]`` is the (row, column) of the k-th coefficient.
ZIGZAG: tuple[tuple[int, int], ...] = tuple(
    sorted(((r, c) for r in range(8) for c in range(8)), key=lambda rc: (rc[0] + rc[1], rc[1] if (rc[0] + rc[1]) % 2 == 0 else rc[0]))
)


def ijg_scale_factor(quality: int) -> int:
    """The IJG percentage scale for ``quality`` 1-100 (``jpeg_quality_scaling`` in libjpeg)."""
    q = min(max(int(quality), 1), 100)
    return 5000 // q if q < 50 else 200 - 2 * q


def ijg_table(quality: int, chroma: bool = False, force_baseline: bool = True) -> np.ndarray:
    """The table libjpeg writes at ``quality`` (``jpeg_add_quant_table`` in libjpeg).

    Parameters
    ----------
    quality
        IJG quality 1-100.
    chroma
        Scale the chrominance table K.2 instead of the luminance table K.1.
    force_baseline
        Clamp entries to 255 as libjpeg does for baseline files (the default).
    """
    return _ijg_tables(bool(chroma), bool(force_baseline))[min(max(int(quality), 1), 100) - 1].copy()


@lru_cache(maxsize=4)
def _ijg_tables(chroma: bool, force_baseline: bool) -> np.ndarray:
    base = (ANNEX_K_CHROMINANCE if chroma else ANNEX_K_LUMINANCE).astype(np.int64)
    scales = np.array([ijg_scale_factor(q) for q in range(1, 101)], dtype=np.int64)[:, None, None]
    tables = np.clip((base[None] * scales + 50) // 100, 1, 255 if force_baseline else 32767)
    tables.setflags(write=False)
    return tables


@dataclass(frozen=True, slots=True)
class QualityEstimate:
    """How well a table matches the IJG family.

    ``quality`` is the IJG quality whose scaled Annex K table is closest to the table
    (mean absolute difference ``error``, in quantization steps; 0 for an exact match);
    ``standard`` is True when some IJG quality reproduces the table exactly.
    """

    quality: int
    error: float
    standard: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return {"quality": self.quality, "error": round(self.error, 3), "standard": self.standard}


def estimate_quality(table: np.ndarray, chroma: bool = False) -> QualityEstimate:
    """Estimate the IJG quality of an 8x8 quantization table (natural order).

    The closest table is taken by mean absolute difference; ties go to the higher
    quality. A table that no IJG quality reproduces (``standard`` False) is custom:
    a camera's firmware, Photoshop, or another encoder with its own tables.
    """
    t = np.asarray(table, dtype=np.int64).reshape(8, 8)
    candidates = _ijg_tables(bool(chroma), bool(t.max() <= 255))
    errors = np.abs(candidates - t[None]).mean(axis=(1, 2))
    best = int(np.flatnonzero(errors == errors.min())[-1])
    return QualityEstimate(quality=best + 1, error=float(errors[best]), standard=bool(errors[best] == 0.0))


def closest_ijg_quality(steps: dict[tuple[int, int], int], chroma: bool = False) -> QualityEstimate | None:
    """The IJG quality whose table best matches a partial table (``{(row, col): step}``).

    Used for tables recovered from evidence (e.g. the primary steps of a double-compressed
    image), where only some positions are known. None when ``steps`` is empty.
    """
    if not steps:
        return None
    rows, cols = zip(*steps)
    known = np.array(list(steps.values()), dtype=np.int64)
    candidates = _ijg_tables(bool(chroma), True)[:, list(rows), list(cols)]
    errors = np.abs(candidates - known[None]).mean(axis=1)
    best = int(np.flatnonzero(errors == errors.min())[-1])
    return QualityEstimate(quality=best + 1, error=float(errors[best]), standard=bool(errors[best] == 0.0))
