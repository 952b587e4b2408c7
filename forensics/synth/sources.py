"""Which genuine photos the generator starts from, and how they are read.

Why: realistic forgeries are made from real camera originals (and the lossless originals of
the copy-move benchmarks), so that the untouched part of every synthetic image keeps a real
acquisition and compression history. This is the recipe of the synthetic training data of
Wu, AbdAlmageed & Natarajan (ManTra-Net, CVPR 2019) and of Kwon et al. (CAT-Net, WACV 2021 /
IJCV 2022), who splice into genuine JPEGs precisely so that compression traces stay intact.

Pixels are decoded as stored (no EXIF rotation: rotating would move the 8x8 JPEG grid) and
never resized (resampling erases compression traces); a large photo is cropped instead, with
the crop's top-left corner on a multiple of 8 so that a camera JPEG's block grid stays aligned.

Every random choice is drawn from a generator seeded by the run's seed and a stable hash of
the original's ``source`` key, so adding a dataset or an original changes no other image.
"""

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: Datasets of ``../shared/data`` whose authentic rows serve as originals.
SOURCE_DATASETS: tuple[str, ...] = (
    "dresden_natural",
    "recapture_phone",
    "exif_samples_ianare",
    "cvip_copymove",
    "noso_copymove",
    "casia2_samples",
    "comofod_subset",
    "mapo80_exif_spoof",
)

#: Smallest accepted side: thumbnails leave no room for a realistic local edit.
MIN_SIDE = 256
#: Formats accepted per dataset (camera folders hold TIFF/HEIC too; only their JPEGs are used).
_FORMATS: dict[str, frozenset[str]] = {"exif_samples_ianare": frozenset({"JPEG"})}
_DEFAULT_FORMATS = frozenset({"JPEG", "PNG"})
#: CoMoFoD's ``postprocessed/`` originals are JPEG-compressed, noisy or blurred variants.
_EXCLUDED_PREFIXES: dict[str, tuple[str, ...]] = {"comofod_subset": ("postprocessed/",)}


@dataclass(frozen=True, slots=True)
class Original:
    """One genuine photo: its dataset, its path inside the dataset, its format and size."""

    dataset: str
    file: str
    path: Path
    format: str
    width: int
    height: int

    @property
    def key(self) -> str:
        """The ``source`` column of every image derived from this photo: ``dataset:file``."""
        return f"{self.dataset}:{self.file}"

    @property
    def stem(self) -> str:
        """A file-name-safe, unique stem for derived files."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.file).with_suffix("").as_posix().replace("/", "-"))
        return f"{self.dataset}__{slug}_{stable_hash(self.key) % 16**6:06x}"


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that, unlike ``hash()``, is the same in every process and run."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def seed_sequence(seed: int, key: str) -> np.random.SeedSequence:
    """The root of every random draw made for the original ``key`` under run seed ``seed``."""
    return np.random.SeedSequence([int(seed), stable_hash(key)])


def list_originals(data_root: Path) -> tuple[list[Original], list[str]]:
    """Authentic rows of :data:`SOURCE_DATASETS` usable as originals, and why others were skipped.

    Only headers are read here (format and size); a file that fails to decode later is
    skipped by the builder.
    """
    originals: list[Original] = []
    skipped: list[str] = []
    for dataset in SOURCE_DATASETS:
        index = data_root / dataset / "index.csv"
        if not index.exists():
            skipped.append(f"{dataset}: folder absent")
            continue
        with index.open(newline="") as fh:
            rows = [row for row in csv.DictReader(fh) if (row.get("label") or "").strip() == "authentic"]
        for row in rows:
            file = row["file"]
            if file.startswith(_EXCLUDED_PREFIXES.get(dataset, ())):
                continue
            path = data_root / dataset / file
            try:
                with Image.open(path) as im:
                    fmt, (width, height) = im.format or "", im.size
            except (OSError, SyntaxError, ValueError) as exc:
                skipped.append(f"{dataset}:{file}: unreadable ({type(exc).__name__})")
                continue
            if fmt not in _FORMATS.get(dataset, _DEFAULT_FORMATS):
                skipped.append(f"{dataset}:{file}: format {fmt}")
            elif min(width, height) < MIN_SIDE:
                skipped.append(f"{dataset}:{file}: {width}x{height} < {MIN_SIDE} px")
            else:
                originals.append(Original(dataset, file, path, fmt, width, height))
    return originals, skipped


def select_originals(originals: list[Original], per_source: int | None, seed: int) -> list[Original]:
    """At most ``per_source`` originals per dataset, a seeded and stable sample.

    Each original is ranked by a hash of (seed, key), so raising ``per_source`` only adds
    originals, and a dataset's choice does not depend on the other datasets.
    """
    chosen: list[Original] = []
    for dataset in dict.fromkeys(o.dataset for o in originals):
        group = sorted((o for o in originals if o.dataset == dataset), key=lambda o: stable_hash(seed, "select", o.key))
        chosen.extend(group if per_source is None else group[:per_source])
    return sorted(chosen, key=lambda o: o.key)


def load_rgb(path: Path) -> np.ndarray:
    """Decode ``path`` to RGB uint8 as stored (EXIF orientation deliberately not applied)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def aligned_crop(height: int, width: int, max_side: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A window ``(top, left, h, w)`` of at most ``max_side`` per side, its corner on the 8x8 grid.

    The whole image when it already fits.
    """
    h, w = min(height, max_side), min(width, max_side)
    top = 8 * int(rng.integers(0, (height - h) // 8 + 1))
    left = 8 * int(rng.integers(0, (width - w) // 8 + 1))
    return top, left, h, w
