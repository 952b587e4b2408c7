"""The savers that write every synthetic image: libjpeg at IJG quality, Photoshop tables, or PNG.

Why: a forgery is always saved again after editing, and which encoder saved it decides most
of the compression evidence (the tables, the quality relative to the original's, the chroma
subsampling). Mixing the IJG family (Pillow, GIMP, ImageMagick and most web services) with
Adobe's own tables and a share of lossless PNG saves follows the varied re-compression of the
synthetic training data of Kwon et al. (CAT-Net, WACV 2021 / IJCV 2022) and keeps a detector
from keying on one encoder. Photoshop's tables come from :mod:`forensics.synth.photoshop`.
"""

import io
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from forensics.synth.photoshop import PHOTOSHOP_TABLES_PATH

#: IJG qualities drawn for the libjpeg encoder (inclusive).
IJG_QUALITY_RANGE: tuple[int, int] = (60, 98)
_PILLOW_SUBSAMPLING: dict[str, int] = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@dataclass(frozen=True, slots=True)
class PhotoshopTable:
    """One Photoshop table pair (natural order) and the chroma subsampling Photoshop used with it."""

    id: str
    luminance: tuple[int, ...]
    chrominance: tuple[int, ...]
    subsampling: str
    ijg_quality_estimate: int


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    """How an image is saved.

    ``encoder`` is ``ijg`` (libjpeg via Pillow at IJG ``quality``), ``photoshop`` (Adobe
    ``table``; ``quality`` is that table's closest IJG quality) or ``png`` (lossless).
    """

    encoder: str
    quality: int | None = None
    subsampling: str | None = None
    table: str | None = None

    @property
    def suffix(self) -> str:
        return ".png" if self.encoder == "png" else ".jpg"

    @property
    def tag(self) -> str:
        """A short file-name tag, unique per distinct spec."""
        if self.encoder == "ijg":
            return f"ijg-q{self.quality}-{(self.subsampling or '').replace(':', '')}"
        return self.table or self.encoder

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@lru_cache(maxsize=2)
def load_photoshop_tables(path: Path = PHOTOSHOP_TABLES_PATH) -> tuple[PhotoshopTable, ...]:
    """The table set of ``photoshop_tables.json`` (rebuilt by ``scripts/synthesize.py --rebuild-photoshop-tables``)."""
    entries = json.loads(Path(path).read_text())["tables"]
    return tuple(
        PhotoshopTable(
            id=e["id"],
            luminance=tuple(int(v) for row in e["luminance"] for v in row),
            chrominance=tuple(int(v) for row in e["chrominance"] for v in row),
            subsampling=e["subsampling"],
            ijg_quality_estimate=int(e["ijg_quality_estimate"]),
        )
        for e in entries
    )


def draw_encoder(rng: np.random.Generator, png_share: float = 0.15, photoshop_share: float = 0.35) -> EncoderSpec:
    """A random saver: PNG with probability ``png_share``, else Photoshop tables or IJG 60-98.

    IJG saves use 4:2:0 subsampling (libjpeg's default) 60 % of the time, else 4:4:4;
    Photoshop saves use the subsampling Photoshop wrote with the drawn table.
    """
    draw = float(rng.random())
    if draw < png_share:
        return EncoderSpec("png")
    if draw < png_share + (1.0 - png_share) * photoshop_share:
        tables = load_photoshop_tables()
        table = tables[int(rng.integers(len(tables)))]
        return EncoderSpec("photoshop", table.ijg_quality_estimate, table.subsampling, table.id)
    quality = int(rng.integers(IJG_QUALITY_RANGE[0], IJG_QUALITY_RANGE[1] + 1))
    return EncoderSpec("ijg", quality, "4:2:0" if rng.random() < 0.6 else "4:4:4")


def encode(rgb: np.ndarray, spec: EncoderSpec, exif: bytes | None = None, icc_profile: bytes | None = None) -> bytes:
    """Save RGB uint8 pixels with ``spec``; optional EXIF and ICC blocks are carried into the file."""
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    extra: dict[str, Any] = {}
    if exif:
        extra["exif"] = exif
    if icc_profile:
        extra["icc_profile"] = icc_profile
    buf = io.BytesIO()
    if spec.encoder == "png":
        image.save(buf, format="PNG", compress_level=3, **extra)
    elif spec.encoder == "ijg":
        image.save(buf, format="JPEG", quality=spec.quality, subsampling=_PILLOW_SUBSAMPLING[spec.subsampling or "4:2:0"], **extra)
    elif spec.encoder == "photoshop":
        table = next(t for t in load_photoshop_tables() if t.id == spec.table)
        image.save(
            buf,
            format="JPEG",
            qtables=[list(table.luminance), list(table.chrominance)],
            subsampling=_PILLOW_SUBSAMPLING[table.subsampling],
            **extra,
        )
    else:
        raise ValueError(f"unknown encoder {spec.encoder!r}")
    return buf.getvalue()
