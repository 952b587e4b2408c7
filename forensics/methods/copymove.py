"""Copy-move (cloning) detection: find regions of the image that are copies of other regions.

Cloning hides or duplicates content with pixels taken from the same photo, so the noise,
colour and lighting match and splice-oriented traces stay silent; what betrays it is that two
regions are (up to a rotation, scaling and mild post-processing) the same pixels. Natural
photos contain *similar* things (windows, leaves, tiles) but almost never two regions that
agree pixel for pixel, including their fine grain, under one geometric transform.

Two complementary searches propose candidate transforms:

1. **Keypoints** (rotation and scale invariant): SIFT keypoints of the luma are matched
   against themselves with the generalised 2-nearest-neighbour test (g2NN), pairs closer than
   a minimum distance are dropped, and similarity transforms are found by repeated RANSAC,
   as in I. Amerini, L. Ballan, R. Caldelli, A. Del Bimbo, G. Serra, "A SIFT-based forensic
   method for copy-move attack detection and transformation recovery", IEEE Transactions on
   Information Forensics and Security 6(3), 2011.
2. **Blocks** (for smooth regions where keypoints are scarce): low-frequency DCT features of
   every overlapping block are sorted, neighbours in the sorted order that agree are paired,
   and their shift vectors vote, after J. Fridrich, D. Soukal, J. Lukas, "Detection of
   copy-move forgery in digital images", DFRWS 2003, and A. C. Popescu, H. Farid, "Exposing
   digital forgeries by detecting duplicated image regions", Dartmouth TR2004-515, 2004.
   Blocks without texture are excluded: flat sky matches itself under any shift.
3. **Exact duplicates** (losslessly stored images of at most EXACT_MAX_PIXELS): every
   overlapping 8x8 block of the full-resolution luma is summarised by exact integer moments,
   blocks with identical moments are paired and their shifts vote, the exact-match search of
   Fridrich et al. (2003). Sensor and compression noise make two textured blocks of a photo
   identical only when one was copied from the other, so this finds small, low-contrast clones
   (a digit on a whiteboard, a label) that give SIFT too few keypoints, at any shift, which the
   block search at 512 px loses when the shift is odd. Lossy formats are left out: their
   quantization makes smooth blocks on the coding grid identical by itself.

A keypoint transform within :data:`QUARTER_TURN_TOLERANCE` of a quarter turn (0, 90, 180 or
270 degrees) and :data:`UNIT_SCALE_TOLERANCE` of unit scale is taken as exactly that, with its
shift rounded to whole pixels when the working image is the original: an editor moves or turns a
clone by whole pixels without resampling it, while RANSAC's estimate from keypoint positions is
off by a fraction of a pixel, and resampling the copy by that estimate blurs away the fine grain
that tells a clone from a look-alike (CoMoFoD 047_F, a quarter-turned clone: fine correlation
0.69 as estimated, 0.97 exact).

Every candidate transform is then verified densely: the image is warped by the transform (with
a cubic kernel, as editors resample a rotated or scaled clone) and compared with itself by
zero-mean normalised cross-correlation of its high-pass residual in small windows (the
dense-field verification idea of D. Cozzolino, G. Poggi, L. Verdoliva, "Efficient dense-field
copy-move forgery detection", IEEE TIFS 10(11), 2015). Only textured
pixels whose residual correlates strongly count, connected regions must contain the matches
that proposed the transform, and the target region is mapped back to give the source region.
The heatmap marks both source and target. The statistic is, for the best verified pair, the
share of the image (per mille, source and target counted) whose residual correlates almost
perfectly (>= STRONG_CORR) with its copy, weighted by the correlation of the region's finest
residual (sigma 1 high-pass, sensor noise) with its copy raised to FINE_POWER: a clone repeats
the same pixels, noise included, while natural look-alikes (printed logos, roof tiles, foliage)
pass the region threshold, sometimes even the strong one in places, but their fine grain
differs over the region as a whole, so they score low.

A JPEG saved after the cloning gives each copy its own quantization noise (their 8x8 grids
differ unless the shift is a multiple of 8), which alone pulls a perfect copy's correlations
below these thresholds. For JPEGs verified near full resolution the noise one compression with
the file's own luminance table adds is therefore measured (the luma compressed once more, off
the grid) and its local variance removed from the correlations' variances where the content
dominates it (Spearman's correction for attenuation): a true clone correlates near 1 again, a
look-alike's differences, which are content, remain.

Verified is not yet cloned. Natural and man-made scenes repeat content: printed patterns, glyphs
in a grid, grilles, keyboards, tiled floors, facades, stripes, and any straight edge or line,
which matches itself shifted along its own direction. These are the main source of false
positives of keypoint and block detectors (V. Christlein, C. Riess, J. Jordan, C. Riess,
E. Angelopoulou, "An evaluation of popular copy-move forgery detection approaches", IEEE TIFS
7(6), 2012; Amerini et al. 2011 discuss repeated structures as their failure case). A clone is
*one* region pasted *once* under one transform, so three tests set a verified pair aside:

- **Echo (periodicity).** The dense correlation map already says, at every pixel, whether it
  matches its pre-image under the transform. Read on the source, it says whether the source
  matches the content one more shift back; read on the target's image, whether the content one
  more shift on matches the target. Relative to the target's own match rate this echo is near 0
  for a clone (beyond either copy lies unrelated content; overlapping clones included, since the
  verified part of an overlapping clone is the part whose source survived) and (n - 2) / (n - 1)
  or more for a lattice of n copies, about 1 for an edge shifted along itself. Pairs at further
  multiples of a lattice (2t, 3t: their end copies have nothing beyond them) are recognised as
  lying inside the area a periodic pair found to repeat; so is a pair whose shift is near such a
  multiple and one of whose regions lies in that area, as in a row of identical objects set
  down by hand, whose spacing is only roughly even (the first and third of three coasters).
  Such a pair is reported with
  ``periodic: true``, its ``lattice_shift_px`` and ``discarded: "periodic"``, and does not count.
- **Slide (parallel edges).** A clone is a two-dimensional copy: a few pixels off its transform
  its residual no longer matches. Two parallel straight edges (a slat's two sides, the lines of a
  grille seen at an angle, whose spacing changes along the grille so that no step repeats
  exactly and the echo stays silent) go on matching when the transform is moved along them. A
  pair that keeps half its match rate 3 px off in some direction is set aside like a periodic
  one, unless its fine grain agrees as only copied pixels do.
- **Synthetic content.** Where most of a pair's neighbourhood is exactly flat (3x3 luma variance
  0: no sensor noise at all), the image is drawn, not photographed: charts, diagrams, caption
  bars, the padding around a rotated photo. Drawings repeat pixel-exact elements by construction,
  so such a pair (``discarded: "synthetic"``) does not count either.

The echo and flat-share tests were measured on the benchmark (README "Accuracy"; the slide test's
figures are at SLIDE_SHARE): on the clone pairs of the 99
CoMoFoD, CVIP and NoSo forgeries the echo is at most 0.11 and the flat share at most 0.31; on the
originals that the release before scored 100 (a grille, keyboards, an edge of a rotated photo's
padding, a fluorescent tube, charts and drawings) the echo is 0.52-0.98 or the flat share
0.56-0.87. A residual-correlation test restricted to region interiors and a dedicated text
detector were not needed for these cases and were not added.

Work is done at a capped resolution (long side <= 1024 px for keypoints and dense
verification, <= 512 px for blocks): cloned regions large enough to matter survive the
resampling, and the cost on a 24 MP photo stays a fraction of a second. Only the
exact-duplicate search reads full resolution, and only up to EXACT_MAX_PIXELS.

Known limits (CoMoFoD, README "Accuracy"): small clones that were also rotated or scaled give
SIFT too few matches and are missed; clones that were distorted, or resampled by a kernel
other than the cubic one verification assumes, lose fine grain and score low; physically
identical printed objects (book spines, labels) that occur only twice have no lattice to
reveal them and can still score as clones (CoMoFoD 037_O, statistic 5.1); a clone pasted inside
a repeated pattern it was taken from, or one step further along it, is set aside with the pattern.
"""

import io
import logging
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
from PIL import Image

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage, JpegData
from forensics.methods.base import Method

logger = logging.getLogger(__name__)

#: Long side of the working image for keypoints and dense verification (pixels).
KEYPOINT_LONG_SIDE = 1024
#: Long side of the working image for block matching (pixels).
BLOCK_LONG_SIDE = 512
#: Images smaller than this long side are upsampled for the keypoint search (more keypoints).
KEYPOINT_MIN_LONG_SIDE = 768
#: SIFT keypoint budget and contrast threshold (lower than SIFT's 0.04 to reach smooth areas).
SIFT_FEATURES = 3000
SIFT_CONTRAST = 0.02
#: Neighbours examined by the g2NN test and its ratio threshold (Amerini et al. use 0.5).
G2NN_NEIGHBOURS = 6
G2NN_RATIO = 0.5
#: Descriptors per chunk of the brute-force distance matrix (bounds it to about 12 MB at 3000).
G2NN_CHUNK = 1024
#: Minimum distance between the two ends of a match, as a fraction of the working long side.
MIN_DISTANCE_FRACTION = 0.02
#: RANSAC reprojection threshold (working pixels) and the minimum inliers of a cluster: two more
#: than a similarity needs; small clones (labels, skylights) yield few matches, and the dense
#: verification rejects chance fits.
RANSAC_THRESHOLD = 3.0
MIN_INLIERS = 4
MAX_CLUSTERS = 6
#: A keypoint transform this close to a quarter turn (degrees) and to unit scale is taken as
#: exact (see the module's docstring), when the exact transform still places its matches within
#: SNAP_MAX_ERROR px (root mean square). The transforms estimated for CoMoFoD's turned or scaled
#: clones lie 1.3 degrees or 1.1 % or more away from a quarter turn at unit scale.
QUARTER_TURN_TOLERANCE = 0.3
UNIT_SCALE_TOLERANCE = 0.005
SNAP_MAX_ERROR = 1.5
#: Block matching: block size, texture floor (std of gray levels), sort windows, tolerance.
BLOCK_SIZE = 12
BLOCK_MIN_STD = 3.0
BLOCK_SORT_WINDOW = 4
BLOCK_FEATURE_TOLERANCE = 1.0
#: Minimum number of block pairs voting for one shift, per 100k blocks (at least 30).
BLOCK_MIN_VOTES = 30
MAX_SHIFTS = 4
#: Exact-duplicate search: formats whose pixels are stored losslessly, the largest image searched
#: (about 0.12 s at 1024 x 768, 0.5 s at 2.4 MP), block side, texture floor (variance, gray levels squared) and the
#: votes a shift needs.
EXACT_FORMATS = frozenset({ImageFormat.PNG, ImageFormat.TIFF, ImageFormat.BMP})
EXACT_MAX_PIXELS = 2_500_000
EXACT_BLOCK = 8
EXACT_MIN_VARIANCE = 1.0
EXACT_MIN_VOTES = 50
#: Dense verification: high-pass sigma, correlation window, correlation and texture thresholds.
HIGHPASS_SIGMA = 2.0
CORR_WINDOW = 7
CORR_THRESHOLD = 0.75
#: Correlation of a true copy's residual (sensor noise included) is close to 1; natural look-alikes
#: (tiles, foliage, waves) reach the region threshold but rarely this one.
STRONG_CORR = 0.92
RESIDUAL_MIN_STD = 1.0
#: Fine residual (gray minus a Gaussian blur of this sigma) compared over a whole target region,
#: and the power of that correlation that weights the region's strong area. A clone repeats the
#: sensor noise, so its fine residual correlates at 0.93-1.0 (lower only when the copy was
#: resampled or recompressed); a natural look-alike under an almost-but-not-quite identity
#: transform (printed signs, roof tiles) reaches 0.7-0.92, which the power turns into a small
#: weight (0.9**16 = 0.19, 0.98**16 = 0.72).
FINE_SIGMA = 1.0
FINE_POWER = 16
#: Compression noise is simulated only while the working image is at least this share of the
#: original's size; below it, downscaling has averaged the noise away.
NOISE_MIN_SCALE = 0.5
#: The correction applies where the residual's variance is at least this multiple of the noise's
#: (the content dominates); elsewhere an estimate of the difference of two similar numbers is noise.
NOISE_MIN_SNR = 2.0
#: Smallest verified region kept, as a fraction of the image area.
MIN_REGION_FRACTION = 0.0005
#: A verified pair is a repetition, not a clone, when its source also matches the content one
#: more shift back, or the target's content one more shift on, on at least this share of the
#: target's own match rate (the echo). A lattice of n copies along the shift echoes (n - 2) /
#: (n - 1) >= 0.5 for n >= 3, a straight edge or line shifted along itself about 1; a clone
#: pastes one region once, so what lies beyond either end is unrelated content (measured: at most
#: 0.11 on the 99 CoMoFoD, CVIP and NoSo forgeries' clone pairs, 0.29-0.98 on the originals' grilles,
#: keyboards, stripes and edges that the release before flagged).
PERIODIC_ECHO = 0.25
#: A clone is a two-dimensional copy: its residual matches its source under one transform, and a
#: few pixels off it nothing matches. Two parallel straight edges (a slat's two sides, the lines of
#: a grille seen at an angle) go on matching along the edges' direction. Each pair is also read
#: with its transform moved SLIDE_PX px in SLIDE_DIRECTIONS directions; where some direction keeps
#: at least SLIDE_SHARE of its match rate, the match slides along a line and the pair is set aside
#: with the repeated patterns, unless its fine grain agrees as only copied pixels do (fine
#: correlation SLIDE_MAX_FINE or more: a clone whose verified part is an edge, as after strong
#: JPEG compression). Measured: 0.59 and 0.79 on the slats of recapture_phone real_007 and
#: real_027 (fine correlation 0.92 and 0.91); among the 99 CoMoFoD, CVIP and NoSo forgeries it sets
#: aside a pair in 6 of them and moves none across the line (two statistics under it fall to 0).
SLIDE_PX = 3
SLIDE_DIRECTIONS = 16
SLIDE_SHARE = 0.5
SLIDE_MAX_FINE = 0.97
#: A pair whose neighbourhood (source and target dilated by FLAT_RING px) is at least this share
#: exactly flat (3x3 luma variance 0: no sensor noise at all) is synthetic content: charts,
#: drawings, caption bars, padding added around a rotated photo. Such graphics repeat pixel-exact
#: elements by construction (measured: 0.56-0.87 on the flagged charts and drawings, at most 0.31
#: around the forgeries' clones).
SYNTHETIC_FLAT = 0.5
FLAT_RING = 15
#: A pair whose source and target each lie at least this much inside the area of a periodic
#: pair is a further multiple of that lattice (see _lattice_members).
LATTICE_COVER = 0.5
#: A pair whose shift is within this share of the lattice's shift of a multiple k >= 2 of it, and
#: one of whose regions lies inside the lattice's area, is a further copy of an unevenly spaced
#: row (measured: the first and third coasters of CoMoFoD 005 and 041 lie 0.10 of a step from 2t).
LATTICE_STEP_TOLERANCE = 0.25


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A proposed transform ``dst = M @ [x, y, 1]`` with the matched points that proposed it."""

    kind: str
    matrix: np.ndarray
    src: np.ndarray
    dst: np.ndarray


@dataclass(frozen=True, slots=True)
class _Region:
    candidate: _Candidate
    target: np.ndarray
    source: np.ndarray
    seeds: int
    #: Target pixels whose residual correlates almost perfectly (STRONG_CORR) with the source.
    strong: int
    #: Correlation of the fine residual over the whole target region with its source.
    fine_corr: float
    #: Share of the source that matches its own pre-image (the content one more shift back) and of
    #: the target's image (one more shift on) that matches the target, relative to the target's own
    #: match rate: near 0 for a clone, high for a periodic pattern or a straight edge.
    echo_back: float = 0.0
    echo_forward: float = 0.0
    #: Share of the region's neighbourhood whose luma is exactly constant (no sensor noise).
    flat_share: float = 0.0
    #: Share of the target's match rate kept with the transform moved SLIDE_PX px, in the best
    #: direction: near 0 for a clone, high for parallel straight edges (see SLIDE_SHARE).
    slide: float = 0.0
    #: Shift (working pixels) of the periodic pair whose repeated area covers this pair, if any.
    lattice: tuple[float, float] | None = None

    @property
    def echo(self) -> float:
        return max(self.echo_back, self.echo_forward)

    @property
    def periodic(self) -> bool:
        return self.echo >= PERIODIC_ECHO or self.slide >= SLIDE_SHARE or self.lattice is not None

    @property
    def synthetic(self) -> bool:
        return self.flat_share >= SYNTHETIC_FLAT

    @property
    def discarded(self) -> str | None:
        """Why the pair is no evidence of a clone, or None when it is."""
        if self.periodic:
            return "periodic"
        if self.synthetic:
            return "synthetic"
        return None

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.target | self.source))


def _resize_long_side(gray: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """``gray`` resized so its long side is ``long_side``; returns the image and the scale factor."""
    h, w = gray.shape
    scale = long_side / max(h, w)
    if abs(scale - 1.0) < 1e-6:
        return gray.astype(np.float32, copy=True), 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(gray, size, interpolation=interp).astype(np.float32), scale


def _g2nn(desc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` accepted by the g2NN test among the exact ``k`` nearest other descriptors.

    g2NN (Amerini et al. 2011) accepts neighbours 1..m of a descriptor while d_m / d_(m+1)
    stays below G2NN_RATIO. A descriptor whose first neighbour fails that test contributes
    nothing, and most do, so only the two smallest distances are taken for every row (cheap
    minima) and the full ``k``-neighbour ranking only for the rows that pass: the same pairs
    as ranking every row, at a fraction of the cost. Rows go in chunks to bound memory.

    Brute force rather than an approximate KD-tree (FLANN): a forensic score must be the same
    on every run, and randomised trees miss a different share of true neighbours each time.
    SIFT descriptors hold integers <= 255, so with 128 dimensions every dot product is an
    integer below 2**24 and float32 arithmetic is exact in any summation order.
    """
    sq = np.einsum("ij,ij->i", desc, desc)
    found_a, found_b = [], []
    for start in range(0, len(desc), G2NN_CHUNK):
        rows = np.arange(start, min(len(desc), start + G2NN_CHUNK))
        local = rows - start
        d2 = sq[rows, None] + sq[None, :] - 2.0 * (desc[rows] @ desc.T)
        d2[local, rows] = np.inf  # itself; a perfect clone's twin may also lie at distance 0
        first = np.argmin(d2, axis=1)
        d_first = d2[local, first]
        d2[local, first] = np.inf
        d_second = d2.min(axis=1)
        passing = np.flatnonzero(np.sqrt(np.maximum(d_first, 0.0)) < G2NN_RATIO * np.maximum(np.sqrt(np.maximum(d_second, 0.0)), 1e-6))
        if len(passing) == 0:
            continue
        rest = d2[passing]
        part = np.argpartition(rest, k - 2, axis=1)[:, : k - 1]
        dd = np.take_along_axis(rest, part, axis=1)
        order = np.argsort(dd, axis=1, kind="stable")
        nn = np.concatenate([first[passing, None], np.take_along_axis(part, order, axis=1)], axis=1)
        dist = np.sqrt(np.maximum(np.concatenate([d_first[passing, None], np.take_along_axis(dd, order, axis=1)], axis=1), 0.0))
        # accept neighbours 1..m while d_j / d_(j+1) stays below the ratio
        accepted = np.cumprod(dist[:, :-1] < G2NN_RATIO * np.maximum(dist[:, 1:], 1e-6), axis=1).astype(bool)
        r, c = np.nonzero(accepted)
        found_a.append(passing[r] + start)
        found_b.append(nn[r, c])
    if not found_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(found_a).astype(np.int64), np.concatenate(found_b).astype(np.int64)


def _keypoint_candidates(gray: np.ndarray) -> tuple[list[_Candidate], dict[str, Any]]:
    """g2NN self-matching of SIFT keypoints and repeated RANSAC similarity fits (Amerini et al.)."""
    u8 = np.clip(gray + 0.5, 0, 255).astype(np.uint8)
    sift = cv2.SIFT_create(nfeatures=SIFT_FEATURES, contrastThreshold=SIFT_CONTRAST)
    keypoints, desc = sift.detectAndCompute(u8, None)
    info: dict[str, Any] = {"keypoints": len(keypoints), "g2nn_matches": 0}
    if desc is None or len(keypoints) < 2 * MIN_INLIERS:
        return [], info
    pts = np.array([k.pt for k in keypoints], dtype=np.float32)
    a, b = _g2nn(desc, min(G2NN_NEIGHBOURS, len(keypoints) - 1))
    min_dist = MIN_DISTANCE_FRACTION * max(gray.shape)
    far = np.hypot(*(pts[a] - pts[b]).T) >= min_dist
    pairs = np.unique(np.sort(np.stack([a[far], b[far]], axis=1), axis=1), axis=0)
    info["g2nn_matches"] = len(pairs)
    if len(pairs) < MIN_INLIERS:
        return [], info
    # Both orientations are offered to RANSAC: a clone A->B is then one model whichever end
    # each match happened to be found from.
    src = np.concatenate([pts[pairs[:, 0]], pts[pairs[:, 1]]])
    dst = np.concatenate([pts[pairs[:, 1]], pts[pairs[:, 0]]])
    pair_id = np.concatenate([np.arange(len(pairs)), np.arange(len(pairs))])
    alive = np.ones(len(src), dtype=bool)
    candidates: list[_Candidate] = []
    cv2.setRNGSeed(20110301)  # RANSAC reproducible run to run (the RNG is per thread)
    while len(candidates) < MAX_CLUSTERS and np.count_nonzero(alive) >= 2 * MIN_INLIERS:
        idx = np.flatnonzero(alive)
        matrix, inl = cv2.estimateAffinePartial2D(
            src[idx], dst[idx], method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD, maxIters=3000, confidence=0.999
        )
        if matrix is None or inl is None:
            break
        inliers = idx[inl.ravel().astype(bool)]
        if len(inliers) < MIN_INLIERS:
            break
        alive[np.isin(pair_id, pair_id[inliers])] = False
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        if 0.25 <= scale <= 4.0:
            candidates.append(_Candidate("keypoint", matrix.astype(np.float64), src[inliers], dst[inliers]))
    return candidates, info


def _dct_kernels(size: int, orders: int) -> list[np.ndarray]:
    """1-D DCT-II basis vectors 0..orders-1 of length ``size`` (unit norm)."""
    x = (np.arange(size) + 0.5) / size
    out = []
    for u in range(orders):
        v = np.cos(np.pi * u * x)
        out.append((v / np.linalg.norm(v)).astype(np.float32))
    return out


def _block_candidates(gray: np.ndarray) -> tuple[list[_Candidate], dict[str, Any]]:
    """Shift vectors shared by many textured, near-identical blocks (Fridrich; Popescu & Farid)."""
    h, w = gray.shape
    b = BLOCK_SIZE
    info: dict[str, Any] = {"blocks": 0, "block_pairs": 0}
    if h < 4 * b or w < 4 * b:
        return [], info
    kernels = _dct_kernels(b, 3)
    # Low-frequency DCT coefficients of the b x b block whose top-left corner is each pixel.
    orders = [(0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (0, 0)]
    feats = []
    for u, v in orders:
        f = cv2.sepFilter2D(gray, cv2.CV_32F, kernels[v], kernels[u], anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        feats.append(f[: h - b + 1, : w - b + 1])
    mean = cv2.boxFilter(gray, cv2.CV_32F, (b, b), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    sq = cv2.boxFilter(gray * gray, cv2.CV_32F, (b, b), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))[: h - b + 1, : w - b + 1]
    textured = std >= BLOCK_MIN_STD
    ys, xs = np.nonzero(textured)
    info["blocks"] = len(ys)
    if len(ys) < 100:
        return [], info
    # Features in units of the tolerance; the DC term is damped so mild brightness changes pass.
    f = np.stack([feat[ys, xs] for feat in feats], axis=1) / (b / 4.0)
    f[:, -1] *= 0.25
    pa, pb = [], []
    for key in (f[:, 0] + 0.5 * f[:, 1], f[:, 1] - 0.5 * f[:, 0], f[:, 2] + f[:, 3] - f[:, 4]):
        order = np.argsort(key, kind="stable")
        fs = f[order]
        for step in range(1, BLOCK_SORT_WINDOW + 1):
            close = np.flatnonzero(np.sum((fs[:-step] - fs[step:]) ** 2, axis=1) < BLOCK_FEATURE_TOLERANCE**2)
            pa.append(order[close])
            pb.append(order[close + step])
    need = max(BLOCK_MIN_VOTES, int(BLOCK_MIN_VOTES * len(ys) / 100_000))
    candidates, info["block_pairs"], top_votes = _shift_votes(np.concatenate(pa), np.concatenate(pb), xs, ys, (h, w), b, need, "block")
    if info["block_pairs"]:
        info["top_shift_votes"] = top_votes
    return candidates, info


def _shift_votes(
    ia: np.ndarray, ib: np.ndarray, xs: np.ndarray, ys: np.ndarray, shape: tuple[int, int], block: int, need: int, kind: str
) -> tuple[list[_Candidate], int, int]:
    """Translations from paired blocks: blocks ``ia[k]`` and ``ib[k]`` (indices into the corner
    coordinates ``xs``, ``ys``) look alike; pairs farther apart than the minimum distance vote for
    their shift, and the shifts with at least ``need`` votes (at most MAX_SHIFTS) become
    candidates. Also returns the number of distinct voting pairs and the most votes of one shift."""
    h, w = shape
    dx, dy = xs[ib] - xs[ia], ys[ib] - ys[ia]
    flip = (dx < 0) | ((dx == 0) & (dy < 0))  # one direction per pair, so A->B and B->A vote together
    ia, ib = np.where(flip, ib, ia), np.where(flip, ia, ib)
    dx, dy = xs[ib] - xs[ia], ys[ib] - ys[ia]
    far = np.hypot(dx, dy) >= max(2 * block, MIN_DISTANCE_FRACTION * max(h, w))
    pair_keys = np.unique(ia[far].astype(np.int64) * len(ys) + ib[far])  # a pair found twice votes once
    ia, ib = pair_keys // len(ys), pair_keys % len(ys)
    if len(ia) == 0:
        return [], 0, 0
    dx, dy = xs[ib] - xs[ia], ys[ib] - ys[ia]
    code = (dy + h).astype(np.int64) * (2 * w + 1) + (dx + w)
    shifts, votes = np.unique(code, return_counts=True)
    candidates = []
    for t in np.argsort(votes)[::-1][:MAX_SHIFTS]:
        if votes[t] < need:
            break
        sel = code == shifts[t]
        shift = np.float32([dx[sel][0], dy[sel][0]])
        src = np.stack([xs[ia[sel]], ys[ia[sel]]], axis=1).astype(np.float32) + (block / 2.0 - 0.5)
        matrix = np.array([[1.0, 0.0, float(shift[0])], [0.0, 1.0, float(shift[1])]])
        candidates.append(_Candidate(kind, matrix, src, src + shift))
    return candidates, len(ia), int(votes.max())


def _exact_candidates(luma: np.ndarray) -> tuple[list[_Candidate], dict[str, Any]]:
    """Shifts shared by many textured blocks that are identical pixel for pixel (Fridrich et al.)."""
    h, w = luma.shape
    b = EXACT_BLOCK
    info: dict[str, Any] = {"exact_block_pairs": 0}
    if h < 4 * b or w < 4 * b:
        return [], info
    # Luma in 1/16 gray levels as exact integers (float64 sums of integers below 2**53 are exact).
    v = np.round(luma.astype(np.float64) * 16.0)
    xx = np.arange(w, dtype=np.float64)[None, :]
    yy = np.arange(h, dtype=np.float64)[:, None]

    def block_sum(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, cv2.CV_64F, (b, b), normalize=False, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)[: h - b + 1, : w - b + 1]

    s0 = block_sum(v)
    s2 = block_sum(v * v)
    n = float(b * b)
    textured = np.flatnonzero((s2 / n - (s0 / n) ** 2) >= EXACT_MIN_VARIANCE * 256.0)
    if len(textured) < 2:
        return [], info
    ys, xs = np.divmod(textured, w - b + 1)
    # First moments relative to the block's corner: equal for equal blocks wherever they lie.
    moments = (
        s0.ravel()[textured].astype(np.int64),
        s2.ravel()[textured].astype(np.int64),
        (block_sum(v * xx) - xx[:, : w - b + 1] * s0).ravel()[textured].astype(np.int64),
        (block_sum(v * yy) - yy[: h - b + 1] * s0).ravel()[textured].astype(np.int64),
    )
    # One wrapping 64-bit hash to sort by; pairs are confirmed on all four moments.
    key = moments[0] * 1_000_003 + moments[1] * 998_244_353 + moments[2] * 1_000_000_007 + moments[3] * 2_147_483_647
    order = np.argsort(key)
    sorted_key = key[order]
    pa, pb = [], []
    for step in (1, 2, 3):
        same = np.flatnonzero(sorted_key[:-step] == sorted_key[step:])
        a, c = order[same], order[same + step]
        equal = np.logical_and.reduce([m[a] == m[c] for m in moments])
        pa.append(a[equal])
        pb.append(c[equal])
    candidates, info["exact_block_pairs"], top_votes = _shift_votes(
        np.concatenate(pa), np.concatenate(pb), xs, ys, (h, w), b, EXACT_MIN_VOTES, "exact"
    )
    if info["exact_block_pairs"]:
        info["exact_top_votes"] = top_votes
    return candidates, info


def _residual(gray: np.ndarray) -> np.ndarray:
    return gray - cv2.GaussianBlur(gray, (0, 0), HIGHPASS_SIGMA)


def _fine(gray: np.ndarray) -> np.ndarray:
    return gray - cv2.GaussianBlur(gray, (0, 0), FINE_SIGMA)


def _box(x: np.ndarray) -> np.ndarray:
    return cv2.boxFilter(x, cv2.CV_32F, (CORR_WINDOW, CORR_WINDOW), borderType=cv2.BORDER_REFLECT)


@dataclass(frozen=True, slots=True)
class _Noise:
    """Local variance of the compression noise in the residual (correlation windows) and the fine residual."""

    resid: np.ndarray
    fine: np.ndarray


def _compression_noise(luma: np.ndarray, jpeg: JpegData | None, scale: float) -> _Noise | None:
    """How much noise one JPEG compression with the file's own luminance table adds, pixel by pixel.

    A clone compressed after it was made carries independent quantization noise in its two
    copies (their 8x8 grids differ unless the shift is a multiple of 8), so even a perfect copy
    correlates below 1 and the strong-match test fails on it. The noise is measured, not modelled:
    the luma is compressed once more off the block grid (shifted by 4 px) with the file's table and
    the change of its residuals is the noise one compression adds to this content. Its local
    variance is then removed from the variances of the correlation (the correction for
    attenuation, C. Spearman, "The proof and measurement of association between two things",
    American Journal of Psychology 15, 1904), so a true clone correlates near 1 again while a
    look-alike's differences, which are signal, stay.
    """
    if jpeg is None or scale < NOISE_MIN_SCALE:
        return None
    u8 = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8[4:, 4:]).save(buf, format="JPEG", qtables=[jpeg.table_for(0).ravel().tolist()])
    again = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=np.float32)
    again = np.pad(again, ((4, 0), (4, 0)), mode="edge")
    original = u8.astype(np.float32)
    if abs(scale - 1.0) > 1e-6:
        size = (round(luma.shape[1] * scale), round(luma.shape[0] * scale))
        again = cv2.resize(again, size, interpolation=cv2.INTER_AREA)
        original = cv2.resize(original, size, interpolation=cv2.INTER_AREA)
    d_resid = _residual(again) - _residual(original)
    d_fine = _fine(again) - _fine(original)
    d_resid[:4, :] = d_resid[:, :4] = d_fine[:4, :] = d_fine[:, :4] = 0.0
    return _Noise(_box(d_resid * d_resid), d_fine * d_fine)


def _warp_residuals(gray: np.ndarray, resid: np.ndarray, fine: np.ndarray, m: np.ndarray, *, cubic: bool) -> tuple[np.ndarray, np.ndarray]:
    """The source's residual and fine residual carried onto the target by ``m``.

    A rotated or scaled clone is the source *image* resampled by the editor, with a cubic
    kernel by default (Photoshop's bicubic, GIMP's cubic), so with ``cubic`` the source image is
    resampled the same way and then high-passed. Interpolating the residuals themselves
    (linearly) smooths exactly the fine grain that tells a clone from a look-alike: on
    CoMoFoD's rotated and scaled clones the fine correlation rises from 0.90-0.94 to 0.95-0.97
    this way. For a whole-pixel shift both ways give the same pixels. Where the compression-noise
    correction applies (JPEGs verified near full size), the residuals keep the linear warp that
    correction is measured for.
    """
    h, w = gray.shape
    if cubic:
        copy = cv2.warpAffine(gray, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        return _residual(copy), _fine(copy)
    linear = {"flags": cv2.INTER_LINEAR, "borderValue": 0.0}
    return cv2.warpAffine(resid, m, (w, h), **linear), cv2.warpAffine(fine, m, (w, h), **linear)


def _flat(gray: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood is exactly constant: no sensor noise, so drawn, not photographed."""
    g = gray.astype(np.float64)
    mean = cv2.boxFilter(g, cv2.CV_64F, (3, 3), borderType=cv2.BORDER_REFLECT)
    mean2 = cv2.boxFilter(g * g, cv2.CV_64F, (3, 3), borderType=cv2.BORDER_REFLECT)
    return (mean2 - mean * mean) <= 1e-6


_Moments = tuple[np.ndarray, np.ndarray, np.ndarray]


def _moments(x: np.ndarray) -> _Moments:
    """``x`` with its mean and variance in CORR_WINDOW windows (one side of :func:`_window_corr`,
    computed once where it is correlated with many others)."""
    mean = _box(x)
    return x, mean, np.maximum(_box(x * x) - mean * mean, 0.0)


def _window_corr(a: _Moments, b: np.ndarray, noise_a: np.ndarray | None, noise_b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of two residuals in CORR_WINDOW windows, and where it is usable.

    With the compression noise's local variances (``noise_a``, ``noise_b``; see
    :func:`_compression_noise`) those are removed from the two variances, and only windows whose
    content dominates its noise (NOISE_MIN_SNR) are usable. Every usable window also keeps at
    least RESIDUAL_MIN_STD of content of its own on both sides: a flat area matches anything.
    """
    a, ma, va = a
    _, mb, vb = _moments(b)
    cov = _box(a * b) - ma * mb
    usable = np.ones(a.shape, dtype=bool)
    if noise_a is not None and noise_b is not None:
        usable = (va >= NOISE_MIN_SNR * noise_a) & (vb >= NOISE_MIN_SNR * noise_b)
        va, vb = np.maximum(va - noise_a, 0.0), np.maximum(vb - noise_b, 0.0)
    floor = RESIDUAL_MIN_STD**2
    usable &= (va >= floor) & (vb >= floor)
    return cov / np.sqrt(va * vb + 1e-6), usable


def _verify(gray: np.ndarray, resid: np.ndarray, fine: np.ndarray, cand: _Candidate, noise: _Noise | None, flat: np.ndarray) -> _Region | None:
    """Dense check of one transform: where does the residual agree with its warped copy?"""
    h, w = gray.shape
    m = cand.matrix
    warped, warped_fine = _warp_residuals(gray, resid, fine, m, cubic=noise is None)
    valid = cv2.warpAffine(np.ones((h, w), np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    noise_b = None if noise is None else cv2.warpAffine(noise.resid, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    corr, usable = _window_corr(_moments(resid), warped, None if noise is None else noise.resid, noise_b)
    # The displacement at each target pixel must exceed the minimum distance (no self-match).
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    inv = cv2.invertAffineTransform(m)
    disp = np.hypot((inv[0, 0] - 1) * xx + inv[0, 1] * yy + inv[0, 2], inv[1, 0] * xx + (inv[1, 1] - 1) * yy + inv[1, 2])
    ok = (corr >= CORR_THRESHOLD) & usable & valid
    ok &= disp >= MIN_DISTANCE_FRACTION * max(h, w)
    mask = cv2.morphologyEx(ok.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    # Keep the components that hold the matches that proposed this transform.
    px = np.clip(np.round(cand.dst[:, 0]).astype(int), 0, w - 1)
    py = np.clip(np.round(cand.dst[:, 1]).astype(int), 0, h - 1)
    seed_labels = labels[py, px]
    seed_labels = seed_labels[seed_labels > 0]
    min_area = MIN_REGION_FRACTION * h * w
    keep = [lab for lab in np.unique(seed_labels) if stats[lab, cv2.CC_STAT_AREA] >= min_area]
    if not keep:
        return None
    target = np.isin(labels, keep)
    source = cv2.warpAffine(target.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    strong = int(np.count_nonzero(target & (corr >= STRONG_CORR)))
    a = fine[target].astype(np.float64)
    b = warped_fine[target].astype(np.float64)
    var_a, var_b = a.var(), b.var()
    if noise is not None:
        var_a = max(var_a - float(noise.fine[target].mean()), var_a / NOISE_MIN_SNR)
        var_b = max(var_b - float(cv2.warpAffine(noise.fine, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)[target].mean()), var_b / NOISE_MIN_SNR)
    cov_ab = float(np.mean((a - a.mean()) * (b - b.mean())))
    fine_corr = min(1.0, cov_ab / np.sqrt(var_a * var_b)) if a.size > 1 and var_a > 0 and var_b > 0 else 0.0
    # Echo (periodicity): ``ok`` at a pixel says it matches its pre-image under ``m``; on the source
    # that is the content one shift further back, on the target's image the target itself.
    base = max(float(ok[target].mean()), 1e-6)
    echo_back = float(ok[source].mean()) / base if source.any() else 0.0
    forward = cv2.warpAffine(target.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    echo_forward = float(ok[forward].mean()) / base if forward.any() else 0.0
    slide = _slide(resid, noise, target, m) if max(echo_back, echo_forward) < PERIODIC_ECHO and fine_corr < SLIDE_MAX_FINE else 0.0
    ring = cv2.dilate((target | source).astype(np.uint8), np.ones((FLAT_RING, FLAT_RING), np.uint8)) > 0
    flat_share = float(flat[ring].mean())
    return _Region(cand, target, source, int(np.isin(seed_labels, keep).sum()), strong, fine_corr, echo_back, echo_forward, flat_share, slide)


def _slide(resid: np.ndarray, noise: _Noise | None, target: np.ndarray, m: np.ndarray) -> float:
    """The highest share of ``target`` that still matches its source under ``m`` moved SLIDE_PX px
    (rounded to whole pixels), over SLIDE_DIRECTIONS directions of a full turn, relative to the
    share under ``m`` itself; computed on the target's bounding box, by the correlation test of
    :func:`_verify` on the residual resampled linearly."""
    h, w = resid.shape
    ys, xs = np.nonzero(target)
    pad = CORR_WINDOW
    y0, y1, x0, x1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1), max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    box = np.s_[y0:y1, x0:x1]
    inside = target[box]
    here = _moments(resid[box])
    noise_a = None if noise is None else noise.resid[box]
    # Warped straight into the box: its pixels only, not the whole image's.
    linear = {"dsize": (x1 - x0, y1 - y0), "flags": cv2.INTER_LINEAR, "borderValue": 0.0}

    def rate(offset: tuple[float, float]) -> float:
        moved = m.astype(np.float64)
        moved[:, 2] += (offset[0] - x0, offset[1] - y0)
        b = cv2.warpAffine(resid, moved, **linear)
        noise_b = None if noise is None else cv2.warpAffine(noise.resid, moved, **linear)
        corr, usable = _window_corr(here, b, noise_a, noise_b)
        return float(((corr >= CORR_THRESHOLD) & usable)[inside].mean())

    own = rate((0.0, 0.0))
    if own <= 0.0:
        return 0.0
    angles = 2 * np.pi * np.arange(SLIDE_DIRECTIONS) / SLIDE_DIRECTIONS
    return max(rate((round(SLIDE_PX * np.cos(t)), round(SLIDE_PX * np.sin(t)))) for t in angles) / own


def _rescaled(cand: _Candidate, ratio: float) -> _Candidate:
    """``cand`` expressed in an image resized by ``ratio`` (a similarity keeps its linear part).

    Coordinates follow ``cv2.resize``: pixel centres at integers, so a point maps to
    ``(p + 0.5) * ratio - 0.5``; for a rotation or a scaling that moves the translation by
    ``0.5 (1 - ratio) (A - I) (1, 1)``, a third of a pixel for a quarter turn found at 1.5 times
    the size."""
    if abs(ratio - 1.0) < 1e-9:
        return cand
    matrix = cand.matrix.copy()
    matrix[:, 2] = ratio * matrix[:, 2] + 0.5 * (1.0 - ratio) * (matrix[:, :2] - np.eye(2)).sum(axis=1)
    return _Candidate(cand.kind, matrix, (cand.src + 0.5) * ratio - 0.5, (cand.dst + 0.5) * ratio - 0.5)


def _snapped(cand: _Candidate, whole_pixels: bool) -> _Candidate:
    """A keypoint candidate near a quarter turn at unit scale, made exactly that: its shift fitted
    to the matches again, and rounded with ``whole_pixels`` (the working image is the original);
    any other transform unchanged."""
    m = cand.matrix
    angle = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    turns = round(angle / 90.0)
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if abs(angle - 90.0 * turns) > QUARTER_TURN_TOLERANCE or abs(scale - 1.0) > UNIT_SCALE_TOLERANCE:
        return cand
    cos, sin = [(1, 0), (0, 1), (-1, 0), (0, -1)][turns % 4]
    rotation = np.array([[cos, -sin], [sin, cos]], dtype=np.float64)
    shift = (cand.dst - cand.src @ rotation.T).mean(axis=0)
    if whole_pixels:
        shift = np.round(shift)
    error = float(np.sqrt(np.mean(np.sum((cand.src @ rotation.T + shift - cand.dst) ** 2, axis=1))))
    if error > SNAP_MAX_ERROR:
        return cand
    return _Candidate(cand.kind, np.hstack([rotation, shift[:, None]]), cand.src, cand.dst)


def _lattice_px(region: _Region, scale: float) -> list[float]:
    m = region.candidate.matrix
    shift = region.lattice if region.lattice is not None and region.echo < PERIODIC_ECHO else (float(m[0, 2]), float(m[1, 2]))
    return [round(shift[0] / scale, 1), round(shift[1] / scale, 1)]


def _lattice_members(regions: list[_Region]) -> list[_Region]:
    """Pairs that lie inside a repeated pattern found by another pair are part of its lattice.

    A pattern of n copies along a shift t also yields pairs at 2t, 3t, ... whose far ends have no
    copy beyond them (the first and last copies), so their own echo can be 0; but both their
    source and their target lie inside the area the pair at t found to repeat. Where the copies
    are only roughly evenly spaced (objects in a row), the far pair's end copy may fall outside
    that area, so a pair whose shift is near a multiple k >= 2 of t needs only one of its regions
    inside it. A clone taken from a pattern and pasted elsewhere keeps its target outside that
    area, at a shift that is no multiple of the pattern's, and is not affected.
    """
    lattices = [r for r in regions if r.echo >= PERIODIC_ECHO]
    if not lattices:
        return regions
    out = []
    for r in regions:
        if r.echo < PERIODIC_ECHO:
            for lat in lattices:
                area = lat.target | lat.source
                inside_target, inside_source = area[r.target].mean() >= LATTICE_COVER, area[r.source].mean() >= LATTICE_COVER
                if (inside_target and inside_source) or ((inside_target or inside_source) and _near_multiple(r, lat)):
                    m = lat.candidate.matrix
                    r = replace(r, lattice=(float(m[0, 2]), float(m[1, 2])))
                    break
        out.append(r)
    return out


def _near_multiple(pair: _Region, lattice: _Region) -> bool:
    """Whether ``pair``'s shift is within LATTICE_STEP_TOLERANCE steps of k times ``lattice``'s, |k| >= 2."""
    step = lattice.candidate.matrix[:, 2].astype(np.float64)
    length = float(np.hypot(*step))
    if length == 0.0:
        return False
    shift = pair.candidate.matrix[:, 2].astype(np.float64)
    k = round(float(shift @ step) / length**2)
    return abs(k) >= 2 and float(np.hypot(*(shift - k * step))) <= LATTICE_STEP_TOLERANCE * length


def _describe(region: _Region, scale: float, shape: tuple[int, int]) -> dict[str, Any]:
    m = region.candidate.matrix
    area = float(shape[0] * shape[1])
    return {
        "kind": region.candidate.kind,
        "matches": len(region.candidate.src),
        "matches_in_region": region.seeds,
        "shift_px": [round(float(m[0, 2]) / scale, 1), round(float(m[1, 2]) / scale, 1)],
        "rotation_deg": round(float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))), 1),
        "scale": round(float(np.sqrt(abs(np.linalg.det(m[:, :2])))), 3),
        "fine_correlation": round(region.fine_corr, 3),
        "echo_back": round(region.echo_back, 3),
        "echo_forward": round(region.echo_forward, 3),
        "slide": round(region.slide, 3),
        "flat_share": round(region.flat_share, 3),
        "strong_fraction": round(2 * region.strong / area, 5),
        "periodic": region.periodic,
        **({"lattice_shift_px": _lattice_px(region, scale)} if region.periodic else {}),
        "discarded": region.discarded,
        "target_fraction": round(np.count_nonzero(region.target) / area, 5),
        "source_fraction": round(np.count_nonzero(region.source) / area, 5),
    }


class CopyMove(Method):
    name = "copymove"
    version = "1.9"
    cost_seconds = 0.58
    # the statistic is a share of the image, from 0 to hundreds per mille: scored on its log
    default_logistic = Logistic(center=1.8, scale=0.6, log=True)

    def examine(self, image: DecodedImage) -> Finding:
        luma = np.asarray(image.luma, dtype=np.float32)
        h, w = luma.shape
        if min(h, w) < 64:
            return self.not_applicable("The image is too small to search for copied regions.", {"width": w, "height": h})
        long_side = max(h, w)
        kp_side = min(long_side, KEYPOINT_LONG_SIDE) if long_side >= KEYPOINT_MIN_LONG_SIDE else KEYPOINT_MIN_LONG_SIDE
        # Verification never upsamples: the residual of a true copy matches down to its noise,
        # which interpolation would smooth away.
        gray, scale = _resize_long_side(luma, min(long_side, KEYPOINT_LONG_SIDE))
        kp_gray, kp_scale = (gray, scale) if kp_side == min(long_side, KEYPOINT_LONG_SIDE) else _resize_long_side(luma, kp_side)
        block_gray, block_scale = _resize_long_side(luma, min(long_side, BLOCK_LONG_SIDE))
        kp_cands, kp_info = _keypoint_candidates(kp_gray)
        block_cands, block_info = _block_candidates(block_gray)
        exact = image.format in EXACT_FORMATS and h * w <= EXACT_MAX_PIXELS
        exact_cands, exact_info = _exact_candidates(luma) if exact else ([], {})
        candidates = (
            [_snapped(_rescaled(c, scale / kp_scale), whole_pixels=scale == 1.0) for c in kp_cands]
            + [_rescaled(c, scale / block_scale) for c in block_cands]
            + [_rescaled(c, scale) for c in exact_cands]
        )
        resid = _residual(gray)
        fine = _fine(gray)
        noise = _compression_noise(luma, image.jpeg, scale) if candidates else None
        flat = _flat(gray) if candidates else None
        regions = _lattice_members([r for r in (_verify(gray, resid, fine, c, noise, flat) for c in candidates) if r is not None])
        regions.sort(key=lambda r: (r.discarded is not None, -r.area))
        kept = [r for r in regions if r.discarded is None]
        heat = np.zeros(gray.shape, dtype=np.float32)
        for r in kept:
            heat[r.target | r.source] = 1.0
        area = float(gray.shape[0] * gray.shape[1])
        best = max((2 * r.strong / area * max(r.fine_corr, 0.0) ** FINE_POWER for r in kept), default=0.0)
        statistic = 1000.0 * best
        periodic = sum(r.discarded == "periodic" for r in regions)
        synthetic = sum(r.discarded == "synthetic" for r in regions)
        details: dict[str, Any] = {
            "working_size": [gray.shape[1], gray.shape[0]],
            **kp_info,
            **block_info,
            **exact_info,
            "candidates": len(candidates),
            "verified_pairs": len(regions),
            "discarded_periodic": periodic,
            "discarded_synthetic": synthetic,
            "strong_match_fraction": round(best, 5),
            "duplicated_fraction": round(float(heat.mean()), 5),
            "clusters": [_describe(r, scale, gray.shape) for r in regions[:MAX_CLUSTERS]],
        }
        discarded_note = ""
        if periodic or synthetic:
            parts = []
            if periodic:
                parts.append(f"{periodic} repeated pattern(s) that also match one shift further or a few pixels along (a lattice, stripes, parallel edges: not one clone)")
            if synthetic:
                parts.append(f"{synthetic} in noise-free drawn content (charts, captions, padding), where repeats are by construction")
            discarded_note = " Set aside as no evidence of cloning: " + " and ".join(parts) + "."
        if kept:
            top = details["clusters"][0]
            label = "duplicated regions found"
            summary = (
                f"{len(kept)} region pair(s) match another part of the image pixel for pixel under one "
                f"{'shift' if top['kind'] in ('block', 'exact') else 'geometric transform'}; in the best pair, pixels "
                f"matching almost perfectly cover {100 * best:.1f}% of the image (weighted by how well the "
                f"pair's finest grain agrees)." + discarded_note
            )
        else:
            label = "no duplicated regions"
            summary = "No region of the image was found to be a verified copy of another region." + discarded_note
        return self.ok(statistic, label, summary, details, heatmap=cv2.GaussianBlur(heat, (0, 0), 1.0) if kept else heat)
