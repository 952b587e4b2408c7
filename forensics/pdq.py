"""PDQ, Meta's 256-bit perceptual image hash, in numpy: pixels in, hash and quality out.

The algorithm is the one of Meta ThreatExchange's reference implementation and its paper
("The TMK+PDQF Video-Hashing Algorithm and the PDQ Image Similarity Algorithm", Meta/Facebook,
2019; ``pdq/cpp/hashing/pdqhashing.cpp``):

1. luminance Y = 0.299 R + 0.587 G + 0.114 B, as float;
2. two passes of a Jarosz box filter (a moving average along rows, then along columns; two
   passes approximate a tent filter, Jarosz 2001) with a window of about dimension/128, so
   that the decimation to 64 x 64 that follows does not alias;
3. a 2-D DCT of that 64 x 64 grid keeping the 16 x 16 lowest frequencies *without* the DC
   term (the DCT rows 1..16), so that the hash ignores overall brightness;
4. one bit per coefficient: 1 when above the median of the 256, so the hash has 128 ones and
   is invariant to contrast and gamma-like monotone changes.

The reference's bit order is kept: coefficient (i, j) is bit ``16 i + j`` of the 256-bit
integer, written big-endian (so :func:`to_hex` agrees with ThreatExchange's hex strings).

Flips and quarter-turns of the picture permute and negate DCT coefficients (cosine basis
functions of odd frequency change sign under reflection), so the eight dihedral variants
are computed from one DCT (:func:`dihedral_hashes`), as the reference's ``dct16OriginalTo*``.

Quality (0-100) is the reference's: the summed absolute gradient of the 64 x 64 grid, scaled;
ThreatExchange ignores hashes of quality below 50 (flat or nearly blank pictures, whose
bits are mostly noise and which would match each other).
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import sparse

GRID = 64
KEEP = 16
BITS = KEEP * KEEP
#: ThreatExchange's quality floor: below it a hash is too unreliable to match on.
MIN_QUALITY = 50

# The 16 x 64 DCT-II matrix without its first (DC) row: D[i, j] = sqrt(2/64) cos(pi (i+1) (2j+1) / 128).
_DCT = np.sqrt(2.0 / GRID) * np.cos(np.pi / (2 * GRID) * np.outer(np.arange(1, KEEP + 1), 2 * np.arange(GRID) + 1))


@dataclass(frozen=True)
class PdqHash:
    """A 256-bit PDQ hash (32 bytes, big-endian) and its quality (0-100)."""

    digest: bytes
    quality: int

    @property
    def hex(self) -> str:
        return self.digest.hex()


def _window(old: int) -> int:
    """The reference's ``computeJaroszFilterWindowSize``: ceil(old / (2 * 64))."""
    return (old + 2 * GRID - 1) // (2 * GRID)


@lru_cache(maxsize=64)
def _smoothing(n: int, picks: tuple[int, ...]) -> np.ndarray:
    """Rows ``picks`` of B @ B, with B the reference's ``box1DFloat`` over ``n`` samples: output o averages
    inputs o - (window - half) .. o + half - 1 (half = (window + 2) // 2), truncated at the ends and divided
    by the number of samples inside. (len(picks), n) float32."""
    window = _window(n)
    half = (window + 2) // 2
    o = np.arange(n)
    lo, hi = np.maximum(o - (window - half), 0), np.minimum(o + half, n)
    counts = hi - lo
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    columns = np.repeat(lo, counts) + np.arange(int(counts.sum())) - starts
    box = sparse.csr_array((np.repeat(1.0 / counts, counts), (np.repeat(o, counts), columns)), shape=(n, n))
    return (box[list(picks)] @ box).toarray().astype(np.float32)


def _grid(luma: np.ndarray) -> np.ndarray:
    """The 64 x 64 grid: two Jarosz passes along each axis, then the reference's decimation (the sample
    nearest each cell's centre). The passes are linear and only 64 x 64 of their outputs are kept, so
    they are applied as two thin matrices, rows C (64 x H) and columns R (64 x W): grid = C Y R^T, the
    same numbers as filtering the whole picture four times (within float rounding) at a tenth of the cost."""
    rows, cols = luma.shape
    ri = ((np.arange(GRID) + 0.5) * rows / GRID).astype(int)
    ci = ((np.arange(GRID) + 0.5) * cols / GRID).astype(int)
    picture = np.asarray(luma, dtype=np.float32)
    return (_smoothing(rows, tuple(ri.tolist())) @ picture) @ _smoothing(cols, tuple(ci.tolist())).T


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y of an (H, W, 3) uint8 array (BT.601 weights, the reference's)."""
    rgb = rgb.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _quality(grid: np.ndarray) -> int:
    """The reference's ``pdqImageDomainQualityMetric``: summed |gradient| in percent of 255, truncated, / 90, at most 100."""
    down = np.trunc((grid[:-1, :] - grid[1:, :]) * 100 / 255)
    across = np.trunc((grid[:, :-1] - grid[:, 1:]) * 100 / 255)
    return int(min(100, int(np.abs(down).sum() + np.abs(across).sum()) // 90))


def _bits(coefficients: np.ndarray) -> bytes:
    """Bit 16 i + j set when coefficient (i, j) exceeds the median; 32 bytes, big-endian."""
    flat = coefficients.reshape(-1)
    set_bits = flat > np.median(flat)
    # bit k of the integer is byte 31 - k // 8, bit k % 8 of that byte
    packed = np.packbits(set_bits.reshape(32, 8), axis=1, bitorder="little").reshape(32)
    return packed[::-1].tobytes()


def _dct(luma: np.ndarray) -> tuple[np.ndarray, int]:
    grid = _grid(luma)
    return _DCT @ grid @ _DCT.T, _quality(grid)


def pdq_hash(luma: np.ndarray) -> PdqHash:
    """The PDQ hash of a luminance array (H, W), any float or integer type, 0-255."""
    coefficients, quality = _dct(luma)
    return PdqHash(_bits(coefficients), quality)


# Sign patterns of the dihedral transforms: frequency index i is DCT row i + 1, so a reflection
# along an axis negates the coefficients whose frequency on that axis is odd, i.e. even i.
_EVEN = np.arange(KEEP) % 2 == 0
_ROWS = np.where(_EVEN, -1.0, 1.0)[:, None]  # negates even i (vertical frequency): an upside-down flip
_COLS = np.where(_EVEN, -1.0, 1.0)[None, :]  # negates even j (horizontal frequency): a mirror


def dihedral_hashes(luma: np.ndarray) -> list[PdqHash]:
    """The hashes of the picture and of its seven flips and quarter-turns, from one DCT:
    original, mirror, upside-down, 180 degrees, transpose, and the transpose of the three others
    (the two quarter-turns and the anti-transpose). A query searched with all eight finds a copy
    that was flipped or rotated by multiples of 90 degrees."""
    c, quality = _dct(luma)
    mirror, flip, half_turn = c * _COLS, c * _ROWS, c * _ROWS * _COLS
    variants = [c, mirror, flip, half_turn, c.T, mirror.T, flip.T, half_turn.T]
    return [PdqHash(_bits(v), quality) for v in variants]


def to_chunks(digest: bytes) -> tuple[int, int, int, int]:
    """The 32 bytes as four signed 64-bit integers (big-endian), for BIGINT columns."""
    return tuple(int(x) for x in np.frombuffer(digest, dtype=">i8"))  # type: ignore[return-value]


def from_chunks(chunks: tuple[int, int, int, int] | list[int]) -> bytes:
    return np.array(chunks, dtype=">i8").tobytes()


def distance(a: bytes, b: bytes) -> int:
    """The Hamming distance of two 32-byte hashes (0-256)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()
