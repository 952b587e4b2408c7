#!/usr/bin/env python3
"""Build ``forensics/data/qtables.json``, the quantization-table collection of the ``encoder`` method.

Reads the labelled JPEGs of ``../shared/data`` (each folder's ``index.csv``), takes each
file's table set with the engine's own loader (:func:`forensics.methods.encoder.table_set`),
and groups identical sets by who wrote them:

- ``camera``, keyed by the EXIF make: an ``authentic`` file that names a make and no editing
  software anywhere (Software, XMP CreatorTool, ProcessingSoftware);
- ``editor``, keyed by the editor: a file whose last-saving software (EXIF Software, else XMP
  CreatorTool) names an editing program, whatever its label.

Files smaller than ``MIN_SIDE`` pixels on a side are skipped: ExifTool's test images are 8x8
placeholders whose pixels (and tables) are not the camera's or editor's. Each entry records
the makes, models and software seen, its file count, its count per dataset, and its sources
(``<dataset>:<path>``); the JSON also gives each contributing dataset's licence as
``../shared/data`` states it.

Usage: ``.venv/bin/python scripts/build_qtables.py [--data DIR] [--check]``; ``--check``
rebuilds in memory and exits 1 when the shipped JSON differs.
"""

import argparse
import csv
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forensics.errors import ForensicsError  # noqa: E402
from forensics.exif import name_editor  # noqa: E402
from forensics.formats import ImageFormat  # noqa: E402
from forensics.image import DecodedImage, load_image  # noqa: E402
from forensics.methods.encoder import CAMERA, EDITOR, QTABLES_FILE, claimed_camera, ijg_match, make_key, table_key, table_set  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
#: Licences as ``../shared/data/README.md`` and each folder's README state them.
LICENCES = {
    "c2pa_fixtures": "MIT/Apache-2.0 (c2pa-rs SDK test fixtures)",
    "casia2_samples": "CASIA v2.0 (Dong, Wang, Tan, ChinaSIP 2013): research use, no licence file",
    "comofod_subset": "CoMoFoD (Tralic et al., ELMAR 2013): research use, no licence file",
    "dresden_natural": "Dresden Image Database (Gloe & Boehme, ACM SAC 2010): research use per the Dresden DB terms",
    "exif_samples_ianare": "CC BY-SA 4.0 (ianare/exif-samples)",
    "exiftool_test_images": "Perl licence (ExifTool test suite, Phil Harvey)",
    "mapo80_exif_spoof": "no licence stated (mapo80/image-forgery-scanner)",
    "noso_copymove": "NoSo licence: free for scientific, non-commercial use, cite Novozamsky & Sorel, FSI 2018",
    "nuaa_print_attack": "NUAA (Tan et al., ECCV 2010): research use by its authors, no licence file",
    "recapture_phone": "no licence files (public assignment repositories)",
}
#: Smallest side, in pixels, of a file whose tables are collected.
MIN_SIDE = 64
#: Editors that ``forensics.exif.name_editor`` does not list but files of the data name.
_EXTRA_EDITORS = ((re.compile(r"zoner", re.IGNORECASE), "Zoner Photo Studio"),)
#: Tags naming software, the last saver's first.
_SOFTWARE_TAGS = ("Exif.Image.Software", "Xmp.xmp.CreatorTool", "Xmp.tiff.Software", "Exif.Image.ProcessingSoftware")


def editor_of(software: str) -> str | None:
    named = name_editor(software)
    return named or next((name for pattern, name in _EXTRA_EDITORS if pattern.search(software)), None)


def software_of(image: DecodedImage) -> list[str]:
    tags = {**image.metadata.exif, **image.metadata.xmp}
    values = [tags.get(key) for key in _SOFTWARE_TAGS]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def observe(dataset: str, path: str, label: str, data: bytes) -> dict[str, Any] | None:
    """One file's table set and who wrote it (family, name), or None when it adds nothing."""
    try:
        image = load_image(data, filename=path)
    except ForensicsError:
        return None
    if image.format is not ImageFormat.JPEG or image.jpeg is None or min(image.width, image.height) < MIN_SIDE:
        return None
    make, model = claimed_camera(image)
    software = software_of(image)
    editors = [e for e in map(editor_of, software) if e]
    if software and editor_of(software[0]):
        family, name = EDITOR, editor_of(software[0])
    elif label == "authentic" and make and make_key(make) and not editors:
        family, name = CAMERA, make_key(make)
    else:
        return None
    tables = table_set(image.jpeg)
    return {
        "dataset": dataset,
        "source": f"{dataset}:{path}",
        "family": family,
        "name": name,
        "tables": tables,
        "make": make,
        "model": model,
        "software": software[0] if software else None,
    }


def scan(data_dir: Path) -> list[dict[str, Any]]:
    found = []
    for dataset in sorted(LICENCES):
        index = data_dir / dataset / "index.csv"
        if not index.exists():
            continue
        with index.open(newline="") as handle:
            for row in csv.DictReader(handle):
                path = data_dir / dataset / row["file"]
                if path.suffix.lower() in (".jpg", ".jpeg") and path.exists():
                    seen = observe(dataset, row["file"], row["label"], path.read_bytes())
                    if seen:
                        found.append(seen)
    return found


def group(observations: list[dict[str, Any]]) -> tuple[dict[str, list[list[int]]], list[dict[str, Any]]]:
    """Identical table sets of one family and name become one entry."""
    tables: dict[str, list[list[int]]] = {}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for seen in observations:
        key = table_key(seen["tables"])
        tables[key] = [[int(v) for v in t.ravel()] for t in seen["tables"]]
        groups.setdefault((seen["family"], seen["name"], key), []).append(seen)
    entries = []
    for (family, name, key), members in sorted(groups.items()):
        ijg = ijg_match(members[0]["tables"])
        entries.append(
            {
                "id": f"{family}:{name}:{key[:8]}",
                "table_key": key,
                "family": family,
                "name": name,
                "ijg": {"standard": ijg["standard"], "quality": ijg["quality"]},
                "makes": _counts(m["make"] for m in members),
                "models": _counts(m["model"] for m in members),
                "software": _counts(m["software"] for m in members),
                "files": len(members),
                "datasets": _counts(m["dataset"] for m in members),
                "sources": sorted(m["source"] for m in members),
            }
        )
    return dict(sorted(tables.items())), entries


def _counts(values: Any) -> dict[str, int]:
    return dict(sorted(Counter(v for v in values if v).items()))


def build(data_dir: Path) -> dict[str, Any]:
    tables, entries = group(scan(data_dir))
    used = sorted({d for e in entries for d in e["datasets"]})
    return {
        "about": "Quantization-table collection of the encoder method; written by scripts/build_qtables.py from ../shared/data. "
        "Tables: 64 steps in natural (row-major) order, luminance first. Do not edit by hand.",
        "min_side": MIN_SIDE,
        "datasets": {d: {"licence": LICENCES[d]} for d in used},
        "entries": entries,
        "tables": tables,
    }


def serialize(collection: dict[str, Any]) -> str:
    """Indented JSON with every list of numbers on one line."""
    text = json.dumps(collection, indent=1, ensure_ascii=False)
    return re.sub(r"\[[\d,\s]*\d[\d,\s]*\]", lambda m: json.dumps(json.loads(m.group(0)), separators=(",", ":")), text) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the reference images (default: ../shared/data)")
    parser.add_argument("--check", action="store_true", help="rebuild in memory and exit 1 if the shipped JSON differs")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no reference images at {args.data}", file=sys.stderr)
        return 2
    text = serialize(build(args.data))
    if args.check:
        same = QTABLES_FILE.exists() and QTABLES_FILE.read_text() == text
        print(f"{QTABLES_FILE}: {'up to date' if same else 'differs from a rebuild'}")
        return 0 if same else 1
    QTABLES_FILE.parent.mkdir(parents=True, exist_ok=True)
    QTABLES_FILE.write_text(text)
    print(f"wrote {QTABLES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
