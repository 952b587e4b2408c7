"""Digital ballistics: which encoder wrote a JPEG, read from its quantization tables.

Why: every JPEG encoder picks its quantization tables its own way. libjpeg (the IJG library
inside Pillow, GIMP, ImageMagick and most web services) scales the ITU-T T.81 Annex K tables
by its quality formula; Adobe Photoshop has its own quality levels; camera firmware writes
tables of its maker's design. So the tables tell a camera's original from a file re-saved by
software, and expose a file whose EXIF names a camera that never writes such tables.
References:

- H. Farid, "Digital image ballistics from JPEG quantization", Dartmouth College technical
  report TR2006-583, 2006 (tables of 204 cameras and Photoshop's levels; some coincide).
- J. Kornblum, "Using JPEG quantization tables to identify imagery processed by software",
  DFRWS 2008 (software tables, IJG among them, against camera tables).
- E. Kee, M. K. Johnson, H. Farid, "Digital image authentication from JPEG headers", IEEE
  Trans. Information Forensics and Security 6(3), 2011 (camera signatures by make and model;
  a signature the claimed camera never writes but software does is the evidence).

What is compared: the file's *table set* (its distinct tables in component order, luminance
first, 64 steps each in natural order, as :class:`forensics.image.JpegData` gives them)
against ``forensics/data/qtables.json``, written by ``scripts/build_qtables.py`` from the
benchmark images in ``../shared/data`` (the JSON lists, per entry, every source file as
``<dataset>:<path>`` and each dataset's licence):

- camera entries (61 files, 48 table sets, 15 makes), keyed by the EXIF make (models listed):
  authentic JPEGs that name a make and no editing software, from ``dresden_natural`` (16
  Nikon D200/D70/D70s; their firmware adapts the tables per image, so most sets are unique),
  ``exif_samples_ianare`` (40 files of 14 makes, phones included; one "camera" is a Gran
  Turismo 5 screenshot uploaded by Sony's PMB, kept as labelled) and ``noso_copymove`` (5
  Nikon COOLPIX JPEGs). ``exiftool_test_images`` adds none: its images are 8x8 or thumbnail
  sized placeholders whose pixels ExifTool's author replaced (skipped under 64 px).
  ``mapo80_exif_spoof``, ``casia2_samples``, ``nuaa_print_attack`` and ``recapture_phone``
  authentic JPEGs carry no make and add none.
- editor entries (52 files, 28 table sets), keyed by the editor the file's EXIF Software (else
  XMP CreatorTool) names: Adobe Photoshop, Elements included (the 14 CASIA v2 forgeries saved
  by Photoshop CS, ``exif_samples_ianare`` and ``c2pa_fixtures`` files from Photoshop CS2 to
  24.1, ExifTool's GPS.jpg from Photoshop 7.0), Lightroom, Fireworks, Windows Photo Gallery,
  GIMP (``exif_samples_ianare``) and Zoner Photo Studio (two ``noso_copymove`` Canon files).
  GIMP writes IJG tables (GIMP 2.4 at qualities 50-85 here); IJG tables are recognised by
  :func:`forensics.jpeg_tables.estimate_quality` at any quality, not by the collection.

Decision rule (evidence points; 50 is the decision line, fit_logistic is False):

- tables no editor family writes (not IJG-standard, no editor entry): a camera entry gives
  "camera encoder (<make>)", otherwise "unknown encoder"; 0 points either way.
- tables of an editor family (IJG-standard at some quality, or an editor entry) and an EXIF
  make the collection knows from at least two camera files, none of them with these tables
  (and, for IJG tables, none with any IJG table, since firmware such as Nikon's scales IJG
  tables per image): Kee et al.'s signature mismatch, 60 + 30 points.
- otherwise, editor tables that some camera also writes (the same set, or an IJG table of the
  same quality), or IJG tables under a camera make (13 of the 15 makes in the collection write IJG
  tables): "ambiguous", 10 points (a score under 1).
- otherwise "saved by editing software (<family>)": 60 points.

Leave-one-dataset-out: the finding's details carry, for every piece of collection evidence
used, its file counts per dataset, and :func:`statistic_excluding` recomputes the statistic
as if the entries of the excluded datasets were absent (the method's own statistic is the
same computation, :func:`assess`, with nothing excluded), so an evaluation never credits the method with tables it learnt from the images
it is scored on.

Limits: the collection is small (113 files, 15 camera makes, 6 editors); a camera or editor
absent from it reads "unknown". Re-saving is not tampering: the rule says *which software
saved* the file, and many honest pipelines (messaging apps, CMS resizing) re-save with IJG
tables. Some camera tables equal an editor's (in this data a Nikon E950 original has exactly
the Photoshop CS tables of the CASIA forgeries), which is why shared tables are only
"ambiguous"; a camera without EXIF that writes IJG tables (the 1998 Olympus D-320L sample,
IJG q82, its make only in an APP12 block) reads as software. Someone who re-saves with the
claimed camera's own tables defeats the method.
"""

import hashlib
import json
from collections.abc import Mapping, Set
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage, JpegData
from forensics.jpeg_tables import estimate_quality
from forensics.methods.base import Method

QTABLES_FILE = Path(__file__).resolve().parent.parent / "data" / "qtables.json"

#: Points for tables an editor family writes and no known camera does.
POINTS_EDITOR = 60.0
#: Added when the EXIF make is known and never writes such tables (Kee et al.'s mismatch).
POINTS_MISMATCH = 30.0
#: Editor tables that cameras also write: reported, practically no score.
POINTS_AMBIGUOUS = 10.0
#: Camera files of a make needed before its tables count as known.
MIN_MAKE_FILES = 2
#: Families the collection's entries belong to.
CAMERA, EDITOR = "camera", "editor"

#: Words dropped from EXIF makes, and spellings of one maker, so that "NIKON CORPORATION" and
#: "NIKON" (or "EASTMAN KODAK COMPANY" and "Kodak") are one make.
_MAKE_ALIASES = {"eastman": "kodak", "konica": "minolta"}


def table_set(jpeg: JpegData) -> tuple[np.ndarray, ...]:
    """The distinct 8x8 tables (natural order) in component order, luminance first."""
    tables: list[np.ndarray] = []
    for component in range(len(jpeg.table_of_component)):
        table = np.asarray(jpeg.table_for(component), dtype=np.int64).reshape(8, 8)
        if not any(np.array_equal(table, seen) for seen in tables):
            tables.append(table)
    return tuple(tables)


def table_key(tables: tuple[np.ndarray, ...]) -> str:
    """A stable hash of a table set (the SHA-256 of its steps, 16 hex digits)."""
    text = json.dumps([[int(v) for v in t.ravel()] for t in tables], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ijg_match(tables: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """Each table's IJG quality estimate; ``standard`` when libjpeg reproduces every table."""
    estimates = [estimate_quality(t, chroma=i > 0) for i, t in enumerate(tables)]
    standard = all(e.standard for e in estimates)
    return {
        "standard": standard,
        "quality": estimates[0].quality if standard else None,
        "luma": estimates[0].to_dict(),
        "chroma": estimates[1].to_dict() if len(estimates) > 1 else None,
    }


def make_key(make: str) -> str:
    """The maker an EXIF Make names, lower case: its first word, with a few aliases."""
    words = "".join(c if c.isalnum() else " " for c in make.lower()).split()
    return _MAKE_ALIASES.get(words[0], words[0]) if words else ""


@dataclass(frozen=True, slots=True)
class Collection:
    """``qtables.json``: entries by table key, and per make the camera files' counts."""

    entries_by_key: Mapping[str, tuple[dict[str, Any], ...]]
    makes: Mapping[str, dict[str, Any]]
    camera_ijg_by_quality: Mapping[int, tuple[dict[str, Any], ...]]


@lru_cache(maxsize=1)
def load_collection() -> Collection:
    data = json.loads(QTABLES_FILE.read_text())
    by_key: dict[str, list[dict[str, Any]]] = {}
    makes: dict[str, dict[str, Any]] = {}
    by_quality: dict[int, list[dict[str, Any]]] = {}
    for entry in data["entries"]:
        by_key.setdefault(entry["table_key"], []).append(entry)
        if entry["family"] != CAMERA:
            continue
        make = makes.setdefault(entry["name"], {"camera_files": {}, "ijg_files": {}, "by_table": {}})
        _add_counts(make["camera_files"], entry["datasets"])
        make["by_table"][entry["table_key"]] = entry["datasets"]
        if entry["ijg"]["standard"]:
            _add_counts(make["ijg_files"], entry["datasets"])
            by_quality.setdefault(entry["ijg"]["quality"], []).append(entry)
    return Collection(
        entries_by_key={k: tuple(v) for k, v in by_key.items()},
        makes=makes,
        camera_ijg_by_quality={k: tuple(v) for k, v in by_quality.items()},
    )


def _add_counts(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for dataset, n in counts.items():
        total[dataset] = total.get(dataset, 0) + n


def _live(counts: Mapping[str, int], excluded: Set[str]) -> int:
    """Files left in ``counts`` once the ``excluded`` datasets are taken out."""
    return sum(n for dataset, n in counts.items() if dataset not in excluded)


def _entry_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "family", "name", "makes", "models", "software", "files", "datasets")
    return {k: entry[k] for k in keys}


def describe(tables: tuple[np.ndarray, ...], make: str | None, model: str | None, collection: Collection) -> dict[str, Any]:
    """Everything the rule needs, with per-dataset counts: the finding's details (before points)."""
    key = table_key(tables)
    ijg = ijg_match(tables)
    claimed = None
    mkey = make_key(make) if make else ""
    if mkey:
        known = collection.makes.get(mkey, {"camera_files": {}, "ijg_files": {}, "by_table": {}})
        claimed = {
            "make_key": mkey,
            "camera_files": dict(known["camera_files"]),
            "ijg_files": dict(known["ijg_files"]),
            "files_with_these_tables": dict(known["by_table"].get(key, {})),
        }
    same_quality = collection.camera_ijg_by_quality.get(ijg["quality"], ()) if ijg["standard"] else ()
    return {
        "table_key": key,
        "tables": [[int(v) for v in t.ravel()] for t in tables],
        "ijg": ijg,
        "exif": {"make": make, "model": model},
        "claimed_make": claimed,
        "matched_entries": [_entry_summary(e) for e in collection.entries_by_key.get(key, ())],
        "ijg_quality_cameras": [{"id": e["id"], "name": e["name"], "datasets": e["datasets"]} for e in same_quality],
    }


@dataclass(frozen=True, slots=True)
class Assessment:
    """The rule's outcome: a code, the encoder family in words, and the points that sum to the statistic."""

    code: str
    #: The editor family in words, or for ``camera`` the makes whose cameras write these tables.
    family: str
    points: dict[str, float]

    @property
    def statistic(self) -> float:
        return float(sum(self.points.values()))


def assess(details: Mapping[str, Any], excluded: Set[str] = frozenset()) -> Assessment:
    """Apply the decision rule to ``details`` as if the ``excluded`` datasets were absent."""
    entries = [e for e in details["matched_entries"] if _live(e["datasets"], excluded) > 0]
    cameras = sorted({e["name"] for e in entries if e["family"] == CAMERA})
    editors = sorted({e["name"] for e in entries if e["family"] == EDITOR})
    ijg = details["ijg"]
    family = ", ".join(([f"IJG libjpeg q{ijg['quality']}"] if ijg["standard"] else []) + editors)
    if not family:
        return Assessment("camera", ", ".join(cameras), {}) if cameras else Assessment("unknown", "unknown", {})
    claim = details["claimed_make"]
    if claim and _mismatch(claim, bool(ijg["standard"]), excluded):
        return Assessment("signature_mismatch", family, {"editor_tables": POINTS_EDITOR, "camera_signature_mismatch": POINTS_MISMATCH})
    if cameras:
        return Assessment("ambiguous_camera_tables", family, {"ambiguous": POINTS_AMBIGUOUS})
    if ijg["standard"] and claim:
        return Assessment("ambiguous_ijg_camera_make", family, {"ambiguous": POINTS_AMBIGUOUS})
    if ijg["standard"] and any(_live(e["datasets"], excluded) > 0 for e in details["ijg_quality_cameras"]):
        return Assessment("ambiguous_ijg_quality", family, {"ambiguous": POINTS_AMBIGUOUS})
    return Assessment("editor", family, {"editor_tables": POINTS_EDITOR})


def _mismatch(claim: Mapping[str, Any], ijg: bool, excluded: Set[str]) -> bool:
    """The claimed make is known and never writes these tables (nor, for IJG tables, any IJG table)."""
    known = _live(claim["camera_files"], excluded) >= MIN_MAKE_FILES
    own = _live(claim["files_with_these_tables"], excluded) > 0
    writes_ijg = _live(claim["ijg_files"], excluded) > 0
    return known and not own and not (ijg and writes_ijg)


def statistic_excluding(details: Mapping[str, Any], excluded: Set[str]) -> float:
    """The statistic of a finding with these ``details`` had the collection lacked the ``excluded`` datasets.

    An entry all of whose files come from ``excluded`` datasets is dropped; one seen elsewhere
    too keeps its other files. ``excluded`` holds folder names of ``../shared/data``.
    """
    return assess(details, excluded).statistic


class EncoderMethod(Method):
    name: ClassVar[str] = "encoder"
    version: ClassVar[str] = "1.0"
    applies_to: ClassVar[frozenset[ImageFormat]] = frozenset({ImageFormat.JPEG})
    default_logistic: ClassVar[Logistic] = Logistic(center=50.0, scale=8.0)
    fit_logistic: ClassVar[bool] = False
    uses_dataset_data: ClassVar[bool] = True

    def statistic_excluding(self, details: Mapping[str, Any], excluded: frozenset[str]) -> float:
        return statistic_excluding(details, excluded)

    def examine(self, image: DecodedImage) -> Finding:
        jpeg = image.jpeg
        if jpeg is None or not jpeg.quant_tables or not jpeg.table_of_component:
            return self.not_applicable("The quantization tables could not be read, so the encoder cannot be identified.")
        details = describe(table_set(jpeg), *claimed_camera(image), load_collection())
        result = assess(details)
        details |= {"assessment": result.code, "family": result.family, "points": result.points}
        return self.ok(result.statistic, _label(result, details), _summary(result, details), details)


def claimed_camera(image: DecodedImage) -> tuple[str | None, str | None]:
    """The EXIF Make and Model the file claims (IFD0), or None."""
    exif = image.metadata.exif
    return _tag(exif, "Exif.Image.Make"), _tag(exif, "Exif.Image.Model")


def _tag(exif: Mapping[str, Any], key: str) -> str | None:
    value = exif.get(key)
    if not isinstance(value, str):
        return None
    return value.strip().strip("\x00").strip() or None


def _label(result: Assessment, details: Mapping[str, Any]) -> str:
    make = details["exif"]["make"]
    return {
        "camera": f"camera encoder ({result.family})",
        "unknown": "unknown encoder",
        "signature_mismatch": f"saved by editing software ({result.family}), not a {make} original",
        "editor": f"saved by editing software ({result.family})",
    }.get(result.code, f"ambiguous encoder (camera or {result.family})")


def _summary(result: Assessment, details: Mapping[str, Any]) -> str:
    make = details["exif"]["make"]
    tables = f"The quantization tables (luma IJG estimate q{details['ijg']['luma']['quality']})"
    return {
        "camera": f"{tables} are those of {result.family} cameras in the reference collection; nothing suggests a re-save.",
        "unknown": f"{tables} match no camera or editor in the reference collection; nothing is claimed.",
        "signature_mismatch": (
            f"{tables} are {result.family} tables, which no {make} camera in the reference collection writes: "
            "the file was saved by software, not by the camera its EXIF names."
        ),
        "editor": f"{tables} are {result.family} tables, which no camera in the reference collection writes: the file was saved by software.",
        "ambiguous_camera_tables": f"{tables} are {result.family} tables, but cameras in the reference collection write them too.",
        "ambiguous_ijg_camera_make": (
            f"{tables} are {result.family} tables; the EXIF names a camera ({make}) and cameras of that or unknown makes "
            "also write IJG tables, so this is no evidence of a re-save."
        ),
        "ambiguous_ijg_quality": f"{tables} are {result.family} tables, a quality some cameras in the reference collection also use.",
    }[result.code]
