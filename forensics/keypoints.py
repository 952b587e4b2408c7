"""Local features for crop-tolerant near-duplicate search: ORB keypoints, the keys that index them, and
the geometric check that two pictures share a region.

A global hash (:mod:`forensics.pdq`) moves as far as an unrelated picture's when 5 % of a side is
cropped away: its basis functions span the frame, and the frame changed. Local features do not
depend on the frame. Each picture gets up to :data:`FEATURES` ORB keypoints (Rublee, Rabaud,
Konolige & Bradski, "ORB: an efficient alternative to SIFT or SURF", ICCV 2011: FAST corners,
oriented, with 256-bit rotated-BRIEF descriptors), found on a copy whose long side is
:data:`LONG_SIDE` pixels. The pyramid's scale step is 1.1 rather than ORB's 1.2, because a crop
that is then shown at the same size changes the scale by 5-25 % and descriptors from a
half-way level agree less.

Search has two stages, as image retrieval systems do (Sivic & Zisserman, "Video Google", ICCV 2003;
Philbin et al., "Object retrieval with large vocabularies and fast spatial matching", CVPR 2007):

1. **Candidates by shared keys.** :data:`INDEXED` descriptors of a stored picture, the strongest
   of each part of the frame, are indexed by two 24-bit keys each (the descriptor's first and
   second three bytes; a bit-sampling locality-sensitive hash, Indyk & Motwani 1998): two descriptors of the same
   point, a few bits apart, share one of them often. A query's keys vote for the pictures that
   hold them, each vote weighted by the key's rarity (inverse document frequency), so that the
   keys of flat or repetitive patches, which many pictures hold, count for little.
2. **Geometric verification** of the best candidates: every query descriptor's nearest stored
   descriptor, kept when clearly nearer than the second (Lowe's ratio test, IJCV 2004), and a
   similarity transform (scale, rotation, shift) fitted to those pairs by RANSAC (Fischler &
   Bolles 1981) with a tight tolerance (:data:`TOLERANCE` of the long side). A copy or crop of
   the same picture puts 100 or more pairs on one transform; two different pictures put few
   there, or pairs on a transform no crop makes (a scale of 0.3, a rotation of 40 degrees).
   Shots of one scene from one spot (a tripod, a fixed webcam) do share a region, and are
   reported as such.

Mirror images are not matched here (ORB is not mirror-invariant); PDQ finds mirrored copies
that are not also cropped.
"""

from dataclasses import dataclass

import cv2
import numpy as np

#: Keypoints per picture; how many are indexed for candidate search, spread over a GRID x GRID grid.
FEATURES = 300
INDEXED = 64
GRID = 4
#: Long side of the copy the keypoints are found on, so that the same picture at any size gives the
#: same points; a picture whose short side would fall below MIN_SHORT_SIDE is brought to that instead
#: (ORB needs about 31 pixels around a point), its long side never beyond MAX_LONG_SIDE.
LONG_SIDE = 640
MIN_SHORT_SIDE = 256
MAX_LONG_SIDE = 4 * LONG_SIDE
#: Below this many pixels across (after that scaling) a picture has no keypoints: ORB needs a patch around each.
MIN_SIDE = 32
#: Bits of an index key, and the key tables (each takes three bytes of the descriptor).
KEY_BITS = 24
KEY_TABLES = 2
#: RANSAC tolerance in units of the long side (2.6 px at 640).
TOLERANCE = 0.004
#: Pairs on one transform from which two pictures are said to share a region, and the transforms a
#: crop, resize or quarter-turn of a copy can make. Chosen on the reference pictures of
#: ``bench/bench_duplicates.py``: 99 % of their 10 % crops put 20 or more pairs on one transform;
#: pictures from different sets never put 12 there (the most seen was 11, two generated 256 x 256 paintings).
MIN_INLIERS = 12
SCALE_RANGE = (0.5, 2.0)
MAX_TILT_DEGREES = 15.0
#: Lowe's ratio: a pair is kept when its distance is below this fraction of the second-nearest's.
RATIO = 0.8

#: ORB's settings. FAST's contrast threshold is 2 grey levels rather than 20: ORB keeps the
#: FEATURES corners with the best Harris response anyway, and a low threshold lets a low-contrast
#: picture (a sheet of paper, a white wall, a quarter-size copy) have corners at all.
_ORB = dict(nfeatures=FEATURES, scaleFactor=1.1, nlevels=14, edgeThreshold=15, patchSize=31, fastThreshold=2)


@dataclass(frozen=True)
class Features:
    """A picture's keypoints: ``points`` (N, 2) float32 in units of the long side (x, y), ``descriptors``
    (N, 32) uint8, strongest first; ``width`` and ``height`` of the frame in the same units (the long one is 1)."""

    points: np.ndarray
    descriptors: np.ndarray
    width: float
    height: float

    def __len__(self) -> int:
        return len(self.descriptors)

    def to_bytes(self) -> bytes:
        """Compact form for storage: frame (2 float32), count (uint32), points (float16), descriptors."""
        head = np.array([self.width, self.height], dtype="<f4").tobytes() + np.array([len(self)], dtype="<u4").tobytes()
        return head + self.points.astype("<f2").tobytes() + self.descriptors.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Features":
        width, height = np.frombuffer(blob, dtype="<f4", count=2)
        (n,) = np.frombuffer(blob, dtype="<u4", count=1, offset=8)
        points = np.frombuffer(blob, dtype="<f2", count=2 * int(n), offset=12).astype(np.float32).reshape(-1, 2)
        descriptors = np.frombuffer(blob, dtype=np.uint8, count=32 * int(n), offset=12 + 4 * int(n)).reshape(-1, 32)
        return cls(points, descriptors, float(width), float(height))


@dataclass(frozen=True)
class RegionMatch:
    """Two pictures share a region: the pairs on one transform, the transform's scale and rotation
    (query to stored), and the share of the stored picture's area that the query's frame covers."""

    inliers: int
    scale: float
    rotation: float
    coverage: float


def extract(luma: np.ndarray) -> Features:
    """Keypoints of a luminance array (H, W), 0-255, any numeric type."""
    gray = np.asarray(luma, dtype=np.float32)
    rows, cols = gray.shape
    long_side, short_side = max(rows, cols), max(min(rows, cols), 1)
    factor = min(max(LONG_SIDE / long_side, MIN_SHORT_SIDE / short_side), MAX_LONG_SIDE / long_side)
    if factor != 1:
        size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    scale = float(max(gray.shape))
    width, height = gray.shape[1] / scale, gray.shape[0] / scale
    none = Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), width, height)
    if min(gray.shape) < MIN_SIDE:  # a sliver: no room for a keypoint's patch (and ORB's pyramid would fail)
        return none
    keypoints, descriptors = cv2.ORB_create(**_ORB).detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        return none
    order = np.argsort([-k.response for k in keypoints], kind="stable")
    points = np.array([keypoints[i].pt for i in order], dtype=np.float32) / scale
    return Features(points, descriptors[order], width, height)


def index_keys(descriptors: np.ndarray) -> np.ndarray:
    """The keys of descriptors (N, 32): for table t, bytes 3t..3t+2 as a 24-bit number, plus t << 24; uint32."""
    d = descriptors.astype(np.uint32)
    tables = [(t << KEY_BITS) | (d[:, 3 * t] << 16) | (d[:, 3 * t + 1] << 8) | d[:, 3 * t + 2] for t in range(KEY_TABLES)]
    return np.concatenate(tables) if len(d) else np.zeros(0, dtype=np.uint32)


def stored_keys(features: Features) -> np.ndarray:
    """The keys a stored picture is indexed under, unique: those of :data:`INDEXED` descriptors taken in
    turn from the cells of a :data:`GRID` x :data:`GRID` grid, strongest first in each, so that a crop
    that removes a corner or a side keeps most of them."""
    if not len(features):
        return np.zeros(0, dtype=np.uint32)
    cols = np.minimum((features.points[:, 0] / features.width * GRID).astype(int), GRID - 1)
    rows = np.minimum((features.points[:, 1] / features.height * GRID).astype(int), GRID - 1)
    cells = rows * GRID + cols
    # rank of each point within its cell (points come strongest first): a stable sort by cell, then a running count
    by_cell = np.argsort(cells, kind="stable")
    starts = np.searchsorted(cells[by_cell], cells[by_cell])
    rank = np.empty(len(cells), dtype=np.int64)
    rank[by_cell] = np.arange(len(cells)) - starts
    chosen = np.lexsort((np.arange(len(cells)), rank))[:INDEXED]
    return np.unique(index_keys(features.descriptors[chosen]))


def match(stored: Features, query: Features) -> RegionMatch | None:
    """The shared region of two pictures, or None: ratio-tested nearest pairs, a similarity transform by
    RANSAC, and that transform within the ones a crop, resize or quarter-turn makes."""
    if len(stored) < 3 or len(query) < 3:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors, stored.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    source = np.float32([query.points[g.queryIdx] for g in good])
    target = np.float32([stored.points[g.trainIdx] for g in good])
    transform, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=TOLERANCE, maxIters=500)
    if transform is None or inliers is None or int(inliers.sum()) < MIN_INLIERS:
        return None
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    rotation = float(np.degrees(np.arctan2(transform[1, 0], transform[0, 0])))
    tilt = rotation % 90
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1] or min(tilt, 90 - tilt) > MAX_TILT_DEGREES:
        return None
    return RegionMatch(int(inliers.sum()), scale, rotation, _coverage(stored, query, transform))


def _coverage(stored: Features, query: Features, transform: np.ndarray) -> float:
    """Share of the stored frame's area inside the query's frame mapped onto it."""
    corners = np.float32([[0, 0], [query.width, 0], [query.width, query.height], [0, query.height]])
    mapped = cv2.transform(corners[None], transform)[0]
    frame = np.float32([[0, 0], [stored.width, 0], [stored.width, stored.height], [0, stored.height]])
    area, _ = cv2.intersectConvexConvex(mapped, frame)
    return round(min(1.0, float(area) / (stored.width * stored.height)), 3)
