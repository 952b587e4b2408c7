"""Photoshop's JPEG quantization tables, read from Photoshop-written files of the reference data.

Why: Adobe Photoshop does not scale the IJG tables; its "Save As" quality levels (0-12) and
"Save for Web" levels use Adobe's own tables, so an image last saved by Photoshop carries
quantization tables that no IJG quality reproduces (Kornblum, "Using JPEG quantization tables
to identify imagery processed by software", DFRWS 2008; Farid, "Digital image ballistics from
JPEG quantization", Dartmouth TR2006-583). Adobe does not publish the tables and there is no
network access here, so they are recovered from files in ``../shared/data`` that Photoshop wrote.

A file counts as Photoshop-written when all of these hold:

- it is a three-component JPEG that decodes completely;
- its EXIF Software or XMP CreatorTool names Adobe Photoshop, and its EXIF Software, when
  present, names no other program (GIMP re-saves of Photoshop files keep the XMP CreatorTool);
- it has the APP14 "Adobe" segment that Photoshop's encoder always writes;
- its luminance table is not an IJG table of any quality.

Each distinct table pair is stored once in ``photoshop_tables.json`` with every file that
carries it (paths relative to the data folder), the software named there, its chroma
subsampling and its closest IJG quality (for reference only).
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from forensics.jpeg_tables import estimate_quality

#: Where the table set lives, beside this module.
PHOTOSHOP_TABLES_PATH = Path(__file__).with_name("photoshop_tables.json")
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
_CREATOR_TOOL = re.compile(rb"CreatorTool(?:=\"|>)([^\"<]*)")


def _software(im: Image.Image) -> tuple[str, str]:
    """EXIF Software and XMP CreatorTool (empty when absent)."""
    software = str(im.getexif().get(305, "")).strip("\x00 ")
    xmp = im.info.get("xmp", b"")
    match = _CREATOR_TOOL.search(xmp.encode() if isinstance(xmp, str) else xmp)
    return software, match.group(1).decode("latin-1").strip() if match else ""


def _subsampling(im: Image.Image) -> str:
    h, v = im.layer[0][1:3]
    return {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0"}.get((h, v), f"{h}x{v}")


def photoshop_tables_of(path: Path) -> dict[str, Any] | None:
    """The quantization tables of ``path`` if Photoshop wrote it (see the module's criteria), else None."""
    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or len(im.layer) != 3 or "adobe" not in im.info:
                return None
            software, creator = _software(im)
            named = f"{software} {creator}".lower()
            if "adobe photoshop" not in named or (software and "photoshop" not in software.lower()):
                return None
            tables = im.quantization
            im.load()
            subsampling = _subsampling(im)
    except Exception:  # noqa: BLE001 - the data holds a fuzz corpus: any parser error means "not usable"
        return None
    luminance = np.asarray(tables[0], dtype=np.int64).reshape(8, 8)
    chrominance = np.asarray(tables.get(1, tables[0]), dtype=np.int64).reshape(8, 8)
    estimate = estimate_quality(luminance)
    if estimate.standard:
        return None
    return {
        "luminance": luminance.tolist(),
        "chrominance": chrominance.tolist(),
        "subsampling": subsampling,
        "ijg_quality_estimate": estimate.quality,
        "software": software or creator,
    }


def collect_photoshop_tables(data_root: Path) -> dict[str, Any]:
    """Scan ``data_root`` for Photoshop-written JPEGs; one entry per distinct table pair."""
    data_root = Path(data_root)
    entries: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in data_root.rglob("*") if p.suffix.lower() in _JPEG_SUFFIXES and p.is_file()):
        found = photoshop_tables_of(path)
        if found is None:
            continue
        content = json.dumps([found["luminance"], found["chrominance"], found["subsampling"]])
        table_id = f"ps_{hashlib.sha1(content.encode()).hexdigest()[:6]}"
        entry = entries.setdefault(
            table_id, {"id": table_id, **{k: found[k] for k in found if k != "software"}, "software": [], "files": []}
        )
        entry["files"].append(path.relative_to(data_root).as_posix())
        if found["software"] not in entry["software"]:
            entry["software"].append(found["software"])
    tables = sorted(entries.values(), key=lambda e: (-e["ijg_quality_estimate"], e["id"]))
    return {
        "description": "JPEG quantization tables (natural 8x8 order) of files that Adobe Photoshop wrote, "
        "recovered from ../shared/data by forensics.synth.photoshop; files are relative to that folder",
        "tables": tables,
    }


def write_photoshop_tables(data_root: Path, path: Path = PHOTOSHOP_TABLES_PATH) -> dict[str, Any]:
    """Rebuild the table set from ``data_root`` and write it to ``path``; returns what was written."""
    table_set = collect_photoshop_tables(data_root)
    if not table_set["tables"]:
        raise ValueError(f"no Photoshop-written JPEG found under {data_root}")
    Path(path).write_text(json.dumps(table_set, indent=1) + "\n")
    return table_set
