"""Read labelled image folders in the ``index.csv`` layout of ``../shared/data``.

``index.csv`` columns: ``file,label,mask_file,kind,source`` with paths relative to the
folder; ``label`` is ``authentic | tampered | edited | ai`` (empty for unlabelled corpora).
"""

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

POSITIVE_LABELS = frozenset({"tampered", "edited", "ai"})

#: Folders of generated manipulations are named with this prefix (``scripts/synthesize.py``).
GENERATED_PREFIX = "synth_"


def is_generated(dataset: str) -> bool:
    return dataset.startswith(GENERATED_PREFIX)


def source_group(dataset: str, file: str, source: str, generated: bool) -> str:
    """The unit a within-dataset split must not divide, as ``../shared/data/README.md`` describes.

    Generated images group by their original; CVIP by its original (``imN``); CoMoFoD by the
    image number its variants share; NUAA by subject (the first number of the file name);
    the phone recaptures by contributor (the folder under the label); CASIA forgeries by the
    first source photo their name records, and its originals by their own id in the same
    form (``Au_ani_00028`` -> ``ani00028``); anything else by file.
    """
    name = file.rsplit("/", 1)[-1]
    if generated:
        return source
    patterns = {
        "cvip_copymove": r"(im\d+)",
        "comofod_subset": r"^(\d+)_",
        "nuaa_print_attack": r"^(\d+)_",
        "casia2_samples": r"^(?:Tp_[DS]_\w{3}_\w_\w_([a-z]{3}\d{5})|Au_([a-z]{3})_(\d{5}))",
    }
    if dataset == "recapture_phone":
        parts = file.split("/")
        return parts[-2] if len(parts) >= 2 else name
    pattern = patterns.get(dataset)
    match = re.search(pattern, name) if pattern else None
    return "".join(g for g in match.groups() if g) if match else name


@dataclass(frozen=True, slots=True)
class Sample:
    path: Path
    label: str
    mask_path: Path | None
    kind: str
    #: Where the file came from (the ``source`` column): for generated images
    #: ``<origin dataset>:<original file>``, so splits can keep every image of one original together.
    source: str = ""

    @property
    def positive(self) -> bool:
        return self.label in POSITIVE_LABELS

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()

    def mask(self) -> np.ndarray | None:
        """Ground-truth mask as bool (True = tampered); RGB/RGBA masks are reduced to luminance."""
        if self.mask_path is None:
            return None
        with Image.open(self.mask_path) as im:
            return np.asarray(im.convert("L")) > 127


def read_index(folder: Path | str) -> list[Sample]:
    folder = Path(folder)
    with (folder / "index.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Sample(
            path=folder / row["file"],
            label=(row.get("label") or "").strip(),
            mask_path=folder / row["mask_file"] if row.get("mask_file") else None,
            kind=(row.get("kind") or "").strip(),
            source=(row.get("source") or "").strip(),
        )
        for row in rows
    ]
