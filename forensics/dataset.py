"""Read labelled image folders in the ``index.csv`` layout of ``../shared/data``.

``index.csv`` columns: ``file,label,mask_file,kind,source`` with paths relative to the
folder; ``label`` is ``authentic | tampered | edited | ai`` (empty for unlabelled corpora).
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

POSITIVE_LABELS = frozenset({"tampered", "edited", "ai"})


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
