"""What the file's own metadata (EXIF, IPTC, XMP, maker notes) says about its history.

Metadata is written by whatever last saved the file, so it can be forged or stripped at
will: it is evidence about the *writer*, never proof about the pixels. Still, editing
programs routinely sign their work (Software, XMP CreatorTool and history), leave a
modification date after the capture date, keep a camera's EXIF dimensions or thumbnail
after cropping or resizing, and tools that inject fake camera EXIF rarely reproduce what
a camera writes with every exposure. The cues follow:

- T. Gloe, "Forensic analysis of ordered data structures on the example of JPEG files",
  IEEE WIFS 2012 (metadata structure and content betray the software that wrote a file);
- E. Kee, M. K. Johnson, H. Farid, "Digital image authentication from JPEG headers",
  IEEE Trans. Information Forensics and Security 6(3), 2011 (camera vs software signatures);
- E. Kee, H. Farid, "Digital image authentication from thumbnails", SPIE Electronic
  Imaging 2010 (the EXIF thumbnail keeps the camera's geometry after a crop).

The statistic is a sum of evidence points, each listed with its reason in
``details["reasons"]``; ``details["metadata"]`` holds the file's metadata as read (see
:func:`extraction`); an editing program named in the metadata of a format cameras
write alone crosses the decision line. Stripped metadata is weak evidence: many platforms
strip it on upload.

Kee et al. contrast the signatures of cameras with those of software, in the JPEGs cameras
write. PNG, GIF and BMP files are never a camera's original: software wrote every one of
them, so the name of the program that did (and a bare XMP DerivedFrom, which records the
conversion itself) is what such a file is expected to carry. It is reported, with no points;
recorded editing actions, impossible values and the other cues still count. (The CoMoFoD
benchmark shows why: a third of its unedited originals are PNGs that truthfully name
Photoshop, the program that converted them, as do a fifth of its forgeries.)
"""

from datetime import datetime
from typing import Any, ClassVar

from forensics.calibration import Logistic
from forensics.exif import extract_metadata
from forensics.finding import Finding
from forensics.formats import ImageFormat
from forensics.image import DecodedImage
from forensics.methods.base import Method

# Evidence points per cue (the statistic is their sum).
POINTS_EDITOR = 60.0
POINTS_MODIFIED_LATER = 20.0
POINTS_XMP_HISTORY = 20.0
POINTS_CAMERA_RAW = 15.0
POINTS_EXIF_DIMENSIONS = 15.0
POINTS_THUMBNAIL_ASPECT = 10.0
POINTS_CAMERA_WITHOUT_CAPTURE = 30.0
POINTS_STRIPPED = 10.0
POINTS_GPS_IMPOSSIBLE = 15.0
POINTS_GPS_ZERO = 5.0

#: Formats no camera writes: naming the program that wrote the file is expected there, not evidence.
SOFTWARE_FORMATS = frozenset({ImageFormat.PNG, ImageFormat.GIF, ImageFormat.BMP})

#: Seconds by which ModifyDate may follow DateTimeOriginal before it counts (in-camera processing).
MODIFY_TOLERANCE_S = 10.0
#: Relative aspect-ratio difference between thumbnail and image that counts as a mismatch.
THUMBNAIL_ASPECT_TOLERANCE = 0.10
#: The key of ``details`` that holds the file's metadata as :func:`extract_metadata` read it.
EXTRACTION = "metadata"
_EDIT_ACTIONS = ("saved", "derived", "converted", "edited", "cropped", "filtered", "resized", "produced")


class MetadataMethod(Method):
    name: ClassVar[str] = "metadata"
    version: ClassVar[str] = "1.3"
    cost_seconds: ClassVar[float] = 0.05
    default_logistic: ClassVar[Logistic] = Logistic(center=50.0, scale=8.0)
    fit_logistic: ClassVar[bool] = False

    def examine(self, image: DecodedImage) -> Finding:
        meta = extract_metadata(image)
        reasons = _reasons(meta, image)
        statistic = sum(r["points"] for r in reasons)
        details: dict[str, Any] = {EXTRACTION: meta, "reasons": reasons}
        has_any = meta["has_exif"] or meta["has_iptc"] or meta["has_xmp"] or bool(meta["software"])
        if not has_any and image.format is not ImageFormat.JPEG:
            return self.not_applicable(
                f"The {image.format.value.upper()} file carries no EXIF, IPTC or XMP metadata, so there is nothing to examine.",
                details,
            )
        return self.ok(statistic, _label(reasons), _summary(meta, reasons), details)


def extraction(finding: Finding) -> dict[str, Any] | None:
    """The file's metadata as :func:`extract_metadata` read it, from this method's finding, so
    that a report need not read the file twice; None when the finding has none (another
    method's, an error, or one stored by version 1.2 or older, whose details mixed the
    extraction with the reasons)."""
    if finding.method != MetadataMethod.name:
        return None
    return finding.details.get(EXTRACTION)


def _reasons(meta: dict[str, Any], image: DecodedImage) -> list[dict[str, Any]]:
    reasons: list[dict[str, Any]] = []

    def add(code: str, points: float, text: str) -> None:
        reasons.append({"code": code, "points": points, "reason": text})

    written_by_software = image.format in SOFTWARE_FORMATS
    editors = [s for s in meta["software"] if s["editor"]]
    if editors:
        names = "; ".join(f"{s['value']} ({s['tag']})" for s in editors[:4])
        if written_by_software:
            add(
                "software_format_writer",
                0.0,
                f"{image.format.value.upper()} files are written by software, never by a camera, so naming {names} "
                "is expected and not counted as evidence of editing",
            )
        else:
            add("editing_software", POINTS_EDITOR, f"editing software named: {names}")

    dates = meta["dates"]
    original = _when(dates["date_time_original"])
    modified = [w for w in (_when(dates["modify_date"]), _when(dates["xmp_modify_date"])) if w is not None]
    if original is not None and modified:
        latest = max(modified)
        gap = (latest - original).total_seconds()
        if gap > MODIFY_TOLERANCE_S:
            add(
                "modified_after_capture",
                POINTS_MODIFIED_LATER,
                f"ModifyDate {latest.isoformat()} is {_duration(gap)} after DateTimeOriginal {original.isoformat()}",
            )

    edit_events = [e for e in meta["xmp_history"] if any(a in e.get("action", "").lower() for a in _EDIT_ACTIONS)]
    # In a format only software writes, a bare DerivedFrom records the conversion that made the file.
    if edit_events or (meta["derived_from"] and not written_by_software):
        actions = sorted({e.get("action", "") for e in edit_events})
        what = f"{len(edit_events)} XMP history event(s) ({', '.join(actions)})" if edit_events else "an XMP DerivedFrom reference"
        add("xmp_history", POINTS_XMP_HISTORY, f"the XMP records an editing history: {what}")

    if meta["camera_raw_settings"]:
        add("camera_raw_settings", POINTS_CAMERA_RAW, "XMP holds Adobe Camera Raw / Lightroom development settings")

    dims = meta["exif_dimensions"]
    if dims and sorted(dims) != sorted((image.width, image.height)):
        add(
            "exif_dimensions",
            POINTS_EXIF_DIMENSIONS,
            f"EXIF records {dims[0]}x{dims[1]} pixels but the image has {image.width}x{image.height} (resized or cropped after the EXIF was written)",
        )

    thumb = meta["thumbnail"]
    if thumb and thumb["height"] > 0 and image.height > 0:
        image_aspect = max(image.width, image.height) / min(image.width, image.height)
        thumb_aspect = max(thumb["width"], thumb["height"]) / max(1, min(thumb["width"], thumb["height"]))
        if abs(thumb_aspect / image_aspect - 1.0) > THUMBNAIL_ASPECT_TOLERANCE:
            add(
                "thumbnail_aspect",
                POINTS_THUMBNAIL_ASPECT,
                f"the EXIF thumbnail ({thumb['width']}x{thumb['height']}) has another aspect ratio than the image "
                f"({image.width}x{image.height}); weak, since some cameras pad thumbnails",
            )

    if (meta["make"] or meta["model"]) and not meta["capture_tags"]:
        add(
            "camera_without_capture_data",
            POINTS_CAMERA_WITHOUT_CAPTURE,
            f"the metadata names a camera ({_camera(meta)}) but holds none of the exposure tags a camera writes",
        )

    if meta["stripped"]:
        add("stripped", POINTS_STRIPPED, "the JPEG carries no EXIF at all (stripped; many platforms do this, so weak evidence)")

    gps = meta["gps"] or {}
    if "impossible coordinates" in gps.get("flags", []):
        add("gps_impossible", POINTS_GPS_IMPOSSIBLE, f"GPS coordinates are impossible ({gps['latitude']}, {gps['longitude']})")
    elif "zero coordinates (0, 0)" in gps.get("flags", []):
        add("gps_zero", POINTS_GPS_ZERO, "GPS coordinates are exactly (0, 0), a placeholder rather than a position")
    return reasons


def _when(iso: str | None) -> datetime | None:
    """The naive wall-clock time of an ISO-8601 string (time-zone offsets dropped)."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).replace(tzinfo=None)
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _camera(meta: dict[str, Any]) -> str:
    make, model = meta["make"] or "", meta["model"] or ""
    return model if make and model.lower().startswith(make.split()[0].lower()) else f"{make} {model}".strip()


def _label(reasons: list[dict[str, Any]]) -> str:
    codes = {r["code"] for r in reasons}
    if "editing_software" in codes:
        return "editing software named"
    if codes - {"stripped", "thumbnail_aspect", "gps_zero", "software_format_writer"}:
        return "metadata shows signs of processing"
    if codes == {"stripped"}:
        return "metadata stripped"
    if "software_format_writer" in codes:
        return "software named, as expected for the format"
    return "no sign of editing in metadata"


def _summary(meta: dict[str, Any], reasons: list[dict[str, Any]]) -> str:
    codes = {r["code"]: r for r in reasons}
    dates = meta["dates"]
    parts: list[str] = []
    if "editing_software" in codes:
        last = next(s for s in meta["software"] if s["editor"])
        parts.append(f"Metadata names {last['value']} ({last['editor']}) as software")
    if "modified_after_capture" in codes:
        parts.append(f"DateTimeOriginal {dates['date_time_original']} vs ModifyDate {dates['modify_date'] or dates['xmp_modify_date']}")
    for code in ("software_format_writer", "xmp_history", "exif_dimensions", "camera_without_capture_data", "camera_raw_settings", "gps_impossible"):
        if code in codes:
            parts.append(codes[code]["reason"])
    if parts:
        sentence = "; ".join(parts)
        return sentence[0].upper() + sentence[1:] + "."
    if "stripped" in codes:
        return "The JPEG carries no EXIF metadata at all (stripped, as many platforms do), which is weak evidence of re-saving."
    camera = _camera(meta)
    when = dates["date_time_original"]
    if camera:
        return f"Metadata shows a capture by a {camera}{f' on {when}' if when else ''} and names no editing software."
    return "The metadata names no camera and no editing software, and shows no sign of editing."
