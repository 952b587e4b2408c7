"""Near-duplicate search: index speed at 1,000,000 hashes, recall on edited copies, false matches.

``python bench/bench_duplicates.py``: (1) a :class:`service.duplicates.HashIndex` of 1,000,000
random 256-bit hashes, 1,000 queries of eight hashes each (a picture's dihedral variants), one of
which has a planted match at a random distance up to the chosen one: p50/p99 search time and
the planted matches' recall; (2) PDQ distances between each reference picture (``shared/data``,
camera originals and generated images, brought to 1600 px at most) and its edited copies
(JPEG q50-95, resizes to 50 % and 25 %, crops), searched with the copy's eight variants: recall
at the chosen distance; (3) pairs of distinct reference pictures within the distance.

The chosen distance, ``service.duplicates.MATCH_DISTANCE`` = 47 of 256 bits: measured on 369
distinct reference pictures, every JPEG re-encode at q50-95 lies within 38 (31, ThreatExchange's
default, misses about 1 % of q50), resizes to 50 % within 36, to 25 % within 47 for 97.8 % (the
misses are pictures whose quarter size is tiny or nearly flat: 174 x 38 px and the like). 14 of
the 67,896 pairs of distinct pictures lie within 47; they come from sets that hold shots of one
scene (CoMoFoD originals sharing a picture, the same view from two Dresden cameras, an iPhone's
HDR and plain shots, one phone contributor's repeated photos); the three inspected by eye were
the same scene, so they are near-duplicates rather than false matches. Pairs from different
sets start at 64. 47 is also the largest distance at which the 16-chunk multi-index table needs
radius 2 only (floor(47 / 16) = 2).

PDQ, like every global DCT hash, is not crop-tolerant: a crop of 1 % of one side moves the hash
by up to ~40 bits, 2 % by up to ~55, and 5-10 % by 60-120 (as far as unrelated pictures). Crops
are found by the keypoint stage (:mod:`forensics.keypoints`): (4) a
:class:`service.duplicates.KeypointIndex` of 1,000,000 images of 128 uniformly random keys, 1,000
queries of 600 keys of which 40 are a planted image's: p50/p99 candidate time and recall; (2)
above also reports, per edit, the share found by the keypoint stage as the service runs it
(candidates from an index of the reference pictures, then the geometric check) and by either
stage, and (3) the pairs of distinct reference pictures the keypoint stage matches.
"""

import csv
import hashlib
import io
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from forensics import keypoints, pdq
from service.duplicates import MATCH_DISTANCE, HashIndex, KeypointIndex

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Folders and labels of pictures that are unrelated to each other (one per scene): the camera originals
#: and generated images; NUAA keeps one frame per subject (its frames are consecutive video stills).
UNRELATED = {
    "casia2_samples": "authentic",
    "comofod_subset": "authentic",
    "noso_copymove": "authentic",
    "cvip_copymove": "authentic",
    "dresden_natural": "authentic",
    "recapture_phone": "authentic",
    "mapo80_exif_spoof": "authentic",
    "exif_samples_ianare": "authentic",
    "imagen_gallery": "ai",
    "nuaa_print_attack": "authentic",
}
#: Long side the originals are brought to first (a stored original is what the transforms start from).
MAX_SIDE = 1600


def reference_images() -> Iterator[tuple[str, PILImage.Image]]:
    seen_subjects: set[str] = set()
    for folder, label in UNRELATED.items():
        with (DATA / folder / "index.csv").open() as f:
            for row in csv.DictReader(f):
                if row["label"] != label:
                    continue
                if folder == "nuaa_print_attack":
                    subject = Path(row["file"]).name.split("_")[0]
                    if subject in seen_subjects:
                        continue
                    seen_subjects.add(subject)
                try:
                    with PILImage.open(DATA / folder / row["file"]) as im:
                        im.draft("RGB", (MAX_SIDE, MAX_SIDE))
                        picture = im.convert("RGB")
                except Exception:  # noqa: BLE001 - a file Pillow cannot open (HEIC without a plug-in) is left out
                    continue
                picture.thumbnail((MAX_SIDE, MAX_SIDE))
                yield f"{folder}/{row['file']}", picture


def luma(picture: PILImage.Image) -> np.ndarray:
    return pdq.luminance(np.asarray(picture.convert("RGB")))


def jpeg(quality: int) -> Callable[[PILImage.Image], PILImage.Image]:
    def apply(picture: PILImage.Image) -> PILImage.Image:
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality)
        return PILImage.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return apply


def resize(scale: float) -> Callable[[PILImage.Image], PILImage.Image]:
    return lambda p: p.resize((max(1, round(p.width * scale)), max(1, round(p.height * scale))), PILImage.Resampling.BILINEAR)


def crop(left: float, top: float, right: float, bottom: float) -> Callable[[PILImage.Image], PILImage.Image]:
    def apply(p: PILImage.Image) -> PILImage.Image:
        w, h = p.size
        return p.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))

    return apply


TRANSFORMS: dict[str, Callable[[PILImage.Image], PILImage.Image]] = {
    "jpeg_q50": jpeg(50),
    "jpeg_q75": jpeg(75),
    "jpeg_q95": jpeg(95),
    "resize_50": resize(0.5),
    "resize_25": resize(0.25),
    "crop_10_left": crop(0.10, 0, 0, 0),
    "crop_10_top": crop(0, 0.10, 0, 0),
    "crop_5_each_side": crop(0.05, 0.05, 0.05, 0.05),
    "crop_10_corner": crop(0.10, 0.10, 0, 0),
    "crop_1_left": crop(0.01, 0, 0, 0),
    "crop_2_left": crop(0.02, 0, 0, 0),
    "resize_25_jpeg_q75": lambda p: jpeg(75)(resize(0.25)(p)),
}


def distinct_references() -> list[tuple[str, PILImage.Image]]:
    """The reference pictures less byte-identical pixel copies and CoMoFoD's post-processed versions."""
    seen: set[str] = set()
    out = []
    for name, picture in reference_images():
        digest = hashlib.md5(np.asarray(picture).tobytes(), usedforsecurity=False).hexdigest()
        if digest in seen or "/postprocessed/" in name:
            continue
        seen.add(digest)
        out.append((name, picture))
    return out


def bench_index(size: int = 1_000_000, queries: int = 1000, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
    targets = rng.choice(size, queries, replace=False)
    asked: list[list[bytes]] = []
    for t in targets:
        bits = rng.choice(256, int(rng.integers(0, MATCH_DISTANCE + 1)), replace=False)
        value = int.from_bytes(stored[t].tobytes(), "big")
        for b in bits:
            value ^= 1 << int(b)
        noise = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(7)]
        asked.append([value.to_bytes(32, "big"), *noise])
    index = HashIndex()
    started = time.perf_counter()
    index.add(np.arange(1, size + 1), stored.tobytes())
    index.build()
    built = time.perf_counter() - started
    times, hits = [], 0
    for t, q in zip(targets, asked, strict=True):
        started = time.perf_counter()
        found = index.search(q, MATCH_DISTANCE)
        times.append(time.perf_counter() - started)
        hits += int(t) + 1 in found
    ms = np.array(times) * 1000
    print(
        f"index: {size:,} hashes built in {built:.1f} s; {queries} searches of 8 hashes at distance <= {MATCH_DISTANCE}: "
        f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms; planted recall {hits / queries:.1%}"
    )


def bench_keypoint_index(size: int = 1_000_000, keys_per_image: int = 2 * keypoints.INDEXED, queries: int = 1000, seed: int = 2) -> None:
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 1 << (keypoints.KEY_BITS + 1), size=(size, keys_per_image), dtype=np.uint32)
    index = KeypointIndex()
    started = time.perf_counter()
    index.add(list(range(1, size + 1)), [row.astype("<u4").tobytes() for row in stored])
    index.build()
    built = time.perf_counter() - started
    times, hits = [], 0
    for target in rng.choice(size, queries, replace=False):
        query = np.concatenate([stored[target, :40], rng.integers(0, 1 << (keypoints.KEY_BITS + 1), 560, dtype=np.uint32)])
        started = time.perf_counter()
        found = index.candidates(query)
        times.append(time.perf_counter() - started)
        hits += bool(found) and found[0] == int(target) + 1
    ms = np.array(times) * 1000
    print(
        f"keypoint index: {size:,} images of {keys_per_image} random keys ({(index.keys.nbytes + index.owners.nbytes + index.seqs.nbytes) / 2**20:.0f} MiB) "
        f"built in {built:.1f} s; {queries} queries of 600 keys: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms; "
        f"planted image first {hits / queries:.1%}"
    )


def bench_recall() -> None:
    references = distinct_references()
    names, hashes, features = [], [], []
    for name, picture in references:
        names.append(name)
        hashes.append(pdq.pdq_hash(luma(picture)).digest)
        features.append(keypoints.extract(luma(picture)))
    index = KeypointIndex()
    index.add(list(range(len(references))), [keypoints.stored_keys(f).astype("<u4").tobytes() for f in features])
    index.build()

    def by_keypoints(target: int, query: keypoints.Features) -> bool:
        return target in index.candidates(keypoints.index_keys(query.descriptors)) and keypoints.match(features[target], query) is not None

    print(f"recall over {len(references)} distinct reference pictures (PDQ at distance <= {MATCH_DISTANCE}; keypoints as the service searches):")
    for t, transform in TRANSFORMS.items():
        distances, found, seconds = [], [], []
        missed = []
        for i, (name, picture) in enumerate(references):
            copy = luma(transform(picture))
            distances.append(min(pdq.distance(hashes[i], v.digest) for v in pdq.dihedral_hashes(copy)))
            started = time.perf_counter()
            found.append(by_keypoints(i, keypoints.extract(copy)))
            seconds.append(time.perf_counter() - started)
            if distances[-1] > MATCH_DISTANCE and not found[-1]:
                missed.append(f"{name} ({picture.width}x{picture.height})")
        d, k = np.array(distances), np.array(found)
        print(
            f"  {t:20s} PDQ {np.mean(d <= MATCH_DISTANCE):7.2%} (median {np.median(d):5.1f}, max {d.max():3d})  keypoints {np.mean(k):7.2%}  "
            f"either {np.mean((d <= MATCH_DISTANCE) | k):7.2%}  keypoint search p99 {np.percentile(seconds, 99) * 1000:.0f} ms"
        )
        for m in missed:
            print("      missed:", m)
    numbers = [int.from_bytes(h, "big") for h in hashes]
    pairs = sorted(((numbers[i] ^ numbers[j]).bit_count(), names[i], names[j]) for i in range(len(numbers)) for j in range(i + 1, len(numbers)))
    within = [p for p in pairs if p[0] <= MATCH_DISTANCE]
    print(
        f"pairs of distinct reference pictures within {MATCH_DISTANCE}: {len(within)} of {len(pairs)} (each printed: same scenes, not unrelated)"
    )
    for p in within:
        print("  ", *p)
    print("nearest pairs beyond:", *pairs[len(within) : len(within) + 3], sep="\n   ")
    matched = set()
    for i, f in enumerate(features):
        for j in index.candidates(keypoints.index_keys(f.descriptors), exclude=i):
            if (region := keypoints.match(features[j], f)) is not None:
                matched.add((min(i, j), max(i, j), region.inliers))
    print(f"pairs of distinct reference pictures matched by keypoints: {len(matched)} (each printed)")
    for i, j, inliers in sorted(matched):
        print(f"   {inliers:4d} inliers  {names[i]}  {names[j]}")


if __name__ == "__main__":
    if not DATA.exists():
        sys.exit(f"reference images not found at {DATA}")
    bench_index()
    bench_recall()
    bench_keypoint_index()
