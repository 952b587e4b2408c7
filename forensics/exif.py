"""Interpret an image's EXIF, IPTC and XMP (maker notes included) as plain, JSON-ready facts.

The tags come from the image's one parsed metadata object (``DecodedImage.metadata``, see
:mod:`forensics.tags`), keyed by exiv2's names (``Exif.Image.Make``,
``Exif.Photo.DateTimeOriginal``, ``Exif.GPSInfo.GPSLatitude``, ``Xmp.xmp.CreatorTool``).
:func:`extract_metadata` is the one entry point: the ``metadata`` method and the API's
metadata and compare endpoints call it.

The perceptual hash is the DCT hash of Zauner (C. Zauner, "Implementation and
benchmarking of perceptual image hash functions", MSc thesis, Upper Austria University of
Applied Sciences, 2010) as implemented by ``imagehash.phash``.
"""

import io
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import cv2
import imagehash
import numpy as np
from PIL import Image

from forensics.formats import ImageFormat
from forensics.image import DecodedImage

#: Longest string kept in the compact tag listing.
MAX_STRING = 200
#: Most tags kept in the compact tag listing (maker notes can hold thousands).
MAX_TAGS = 600
#: The perceptual hash is computed on a copy whose longer side is at most this (speed).
PHASH_SIDE = 512

# Editing software, by what its name looks like in Software / CreatorTool / history tags.
_EDITORS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), name)
    for pattern, name in (
        (r"lightroom", "Adobe Lightroom"),
        (r"camera raw", "Adobe Camera Raw"),
        (r"photoshop express", "Adobe Photoshop Express"),
        (r"photoshop", "Adobe Photoshop"),
        (r"imageready", "Adobe ImageReady"),
        (r"fireworks", "Adobe Fireworks"),
        (r"adobe firefly|adobe express", "Adobe Express/Firefly"),
        (r"\bgimp\b", "GIMP"),
        (r"snapseed", "Snapseed"),
        (r"affinity", "Affinity Photo"),
        (r"pixelmator", "Pixelmator"),
        (r"\bcanva\b", "Canva"),
        (r"paint\.net", "Paint.NET"),
        (r"paintshop|paint shop", "Corel PaintShop"),
        (r"corel", "Corel"),
        (r"painttool|\bsai\b", "PaintTool SAI"),
        (r"photoscape", "PhotoScape"),
        (r"picasa", "Picasa"),
        (r"fotor", "Fotor"),
        (r"picsart", "PicsArt"),
        (r"meitu", "Meitu"),
        (r"facetune", "Facetune"),
        (r"faceapp", "FaceApp"),
        (r"\bvsco\b", "VSCO"),
        (r"luminar", "Luminar"),
        (r"darktable", "darktable"),
        (r"rawtherapee", "RawTherapee"),
        (r"capture one", "Capture One"),
        (r"dxo", "DxO"),
        (r"acdsee", "ACDSee"),
        (r"imagemagick", "ImageMagick"),
        (r"graphicsmagick", "GraphicsMagick"),
        (r"microsoft photo|windows photo|photo gallery", "Microsoft Photos"),
        (r"\bkrita\b", "Krita"),
        (r"inkscape", "Inkscape"),
        (r"photopea", "Photopea"),
        (r"pixlr", "Pixlr"),
        (r"polarr", "Polarr"),
        (r"lensa", "Lensa"),
        (r"remini", "Remini"),
    )
)

# Keys naming the software that wrote (or last saved) the file.
_SOFTWARE_KEYS = (
    "Exif.Image.Software",
    "Exif.Image.ProcessingSoftware",
    "Xmp.xmp.CreatorTool",
    "Xmp.tiff.Software",
    "Iptc.Application2.Program",
)
_TEXT_SOFTWARE_KEYS = ("Software", "software", "Creator", "creator")
# Keys that an exposure by a camera writes; a make/model without any of them is odd.
_CAPTURE_KEYS = (
    "Exif.Photo.ExposureTime",
    "Exif.Photo.FNumber",
    "Exif.Photo.ISOSpeedRatings",
    "Exif.Photo.FocalLength",
    "Exif.Photo.ExifVersion",
    "Exif.Photo.ExposureProgram",
    "Exif.Photo.MeteringMode",
    "Exif.Photo.Flash",
)
_ORIENTATIONS = {
    1: "normal",
    2: "mirrored horizontally",
    3: "rotated 180",
    4: "mirrored vertically",
    5: "mirrored horizontally and rotated 270 CW",
    6: "rotated 90 CW",
    7: "mirrored horizontally and rotated 90 CW",
    8: "rotated 270 CW",
}
#: EXIF groups of the standard directories; any other group holds a maker note.
_STANDARD_GROUP = re.compile(r"^(?:Image\d*|Photo|GPSInfo|Iop|Thumbnail|MakerNote|SubImage\d+|SubThumb\d+|MpfInfo)$")
_BYTE_LIST = re.compile(r"^(?:-?\d{1,3} ){16,}-?\d{1,3}$")


# -- value parsing --------------------------------------------------------------------


def parse_rational(text: Any) -> float | None:
    """``"71/10"`` -> 7.1, ``"5"`` -> 5.0; ``None`` for a zero denominator or junk."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            d = float(den)
            return None if d == 0 else float(num) / d
        return float(text)
    except ValueError:
        return None


def _rationals(text: Any) -> list[float | None]:
    return [parse_rational(part) for part in text.split()] if isinstance(text, str) else []


_EXIF_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?)?\s*([+\-]\d{2}:?\d{2}|Z)?")


def parse_date(text: Any, offset: Any = None) -> tuple[str, datetime] | None:
    """Parse an EXIF (``2008:05:30 15:56:01``) or XMP (ISO-8601) date.

    Returns the ISO-8601 string (with the time-zone offset when known) and the naive
    wall-clock ``datetime`` used for comparisons, or ``None`` when unreadable (e.g. the
    all-blank or all-zero dates some cameras write).
    """
    if isinstance(text, list):
        text = text[0] if text else None
    if not isinstance(text, str):
        return None
    match = _EXIF_DATE.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        when = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    zone = zone or (offset.strip() if isinstance(offset, str) and re.fullmatch(r"\s*[+\-]\d{2}:\d{2}\s*", offset) else None)
    iso = when.isoformat()
    if zone:
        iso += "+00:00" if zone == "Z" else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    return iso, when


def _dms(text: Any) -> float | None:
    values = _rationals(text)
    if not values or any(v is None for v in values):
        return None
    degrees = values[0] or 0.0
    minutes = values[1] if len(values) > 1 else 0.0
    seconds = values[2] if len(values) > 2 else 0.0
    return float(degrees) + float(minutes or 0.0) / 60.0 + float(seconds or 0.0) / 3600.0


_XMP_GPS = re.compile(r"^\s*(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?\s*([NSEW])\s*$")


def _xmp_coordinate(text: Any) -> float | None:
    """XMP writes ``"54,59.38N"`` (degrees, decimal minutes) or ``"54,59,22.8N"``."""
    match = _XMP_GPS.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    deg, minutes, seconds, ref = match.groups()
    value = float(deg) + float(minutes) / 60.0 + (float(seconds) / 3600.0 if seconds else 0.0)
    return -value if ref in "SW" else value


def _gps(exif: Mapping[str, Any], xmp: Mapping[str, Any]) -> dict[str, Any] | None:
    lat = _dms(exif.get("Exif.GPSInfo.GPSLatitude"))
    lon = _dms(exif.get("Exif.GPSInfo.GPSLongitude"))
    source = "exif"
    if lat is not None and str(exif.get("Exif.GPSInfo.GPSLatitudeRef", "")).strip().upper().startswith("S"):
        lat = -lat
    if lon is not None and str(exif.get("Exif.GPSInfo.GPSLongitudeRef", "")).strip().upper().startswith("W"):
        lon = -lon
    if lat is None or lon is None:
        lat, lon, source = _xmp_coordinate(xmp.get("Xmp.exif.GPSLatitude")), _xmp_coordinate(xmp.get("Xmp.exif.GPSLongitude")), "xmp"
    altitude = parse_rational(exif.get("Exif.GPSInfo.GPSAltitude"))
    if altitude is not None and str(exif.get("Exif.GPSInfo.GPSAltitudeRef", "0")).strip() == "1":
        altitude = -altitude
    if lat is None or lon is None:
        if altitude is None:
            return None
        return {"latitude": None, "longitude": None, "altitude_m": round(altitude, 2), "source": "exif", "flags": ["no coordinates"]}
    flags = []
    if abs(lat) > 90 or abs(lon) > 180:
        flags.append("impossible coordinates")
    if lat == 0 and lon == 0:
        flags.append("zero coordinates (0, 0)")
    return {
        "latitude": round(lat, 7),
        "longitude": round(lon, 7),
        "altitude_m": None if altitude is None else round(altitude, 2),
        "source": source,
        "flags": flags,
    }


def _first(tags: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = tags.get(key)
        if isinstance(value, Mapping):  # XMP language alternatives
            value = next(iter(value.values()), None)
        if isinstance(value, Sequence) and not isinstance(value, str):
            value = value[0] if value else None
        if isinstance(value, str):
            value = value.strip().strip("\x00").strip()
            if value and not _BYTE_LIST.match(value):
                return value
    return None


def name_editor(software: str) -> str | None:
    """The editing program named by a Software-like string, or ``None`` (camera firmware etc.)."""
    for pattern, name in _EDITORS:
        if pattern.search(software):
            return name
    return None


def _history(xmp: Mapping[str, Any]) -> list[dict[str, str]]:
    """XMP media-management history events (``xmpMM:History``), oldest first."""
    events: dict[int, dict[str, str]] = {}
    for key, value in xmp.items():
        match = re.match(r"^Xmp\.xmpMM\.History\[(\d+)\]/stEvt:(\w+)$", key)
        if match and isinstance(value, str):
            events.setdefault(int(match.group(1)), {})[match.group(2)] = value[:MAX_STRING]
    return [events[i] for i in sorted(events)]


def _compact(tags: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Tags with strings truncated and binary blobs (byte lists) left out; also the count left out."""
    out: dict[str, Any] = {}
    omitted = 0
    for key, value in tags.items():
        if len(out) >= MAX_TAGS:
            omitted += 1
            continue
        if isinstance(value, str):
            if _BYTE_LIST.match(value.strip()):
                omitted += 1
                continue
            out[key] = value[:MAX_STRING]
        elif isinstance(value, Sequence):
            out[key] = [str(v)[:MAX_STRING] for v in value[:20]]
        elif isinstance(value, Mapping):
            out[key] = {str(k): str(v)[:MAX_STRING] for k, v in list(value.items())[:10]}
        else:
            omitted += 1
    return out, omitted


def _thumbnail_size(thumbnail: bytes | None, exif: Mapping[str, str]) -> tuple[int, int] | None:
    """The EXIF thumbnail's size: from its JPEG, or from IFD1's tags for an uncompressed one."""
    if not thumbnail:
        width, height = (parse_rational(exif.get(f"Exif.Thumbnail.{tag}")) for tag in ("ImageWidth", "ImageLength"))
        uncompressed = str(exif.get("Exif.Thumbnail.Compression", "")).strip() == "1"
        return (int(width), int(height)) if uncompressed and width and height else None
    try:
        with Image.open(io.BytesIO(thumbnail)) as pil:
            return int(pil.width), int(pil.height)
    except Exception:  # a corrupt thumbnail is reported as absent size, never fatal
        return None


def _exposure_text(seconds: float | None) -> str | None:
    if seconds is None or seconds <= 0:
        return None
    return f"1/{round(1 / seconds)}" if seconds < 0.5 else f"{seconds:g}"


def perceptual_hash(luma: np.ndarray) -> str:
    """64-bit DCT perceptual hash (hex) of the luminance, on a copy at most PHASH_SIDE px wide.

    ``imagehash.phash`` reduces to 32x32 grey anyway; averaging down to PHASH_SIDE first
    (area interpolation on the one luma plane) keeps a 24 MP image under 0.1 s.
    """
    h, w = luma.shape[:2]
    factor = PHASH_SIDE / max(h, w)
    if factor < 1.0:
        luma = cv2.resize(luma, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    gray = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
    return str(imagehash.phash(Image.fromarray(gray, mode="L")))


def extract_metadata(image: DecodedImage) -> dict[str, Any]:
    """Everything the file says about itself, as JSON-ready data.

    Keys: ``reader``, ``make``, ``model``, ``lens``, ``exposure``, ``dates`` (ISO-8601
    ``date_time_original``, ``create_date``, ``modify_date``, ``xmp_modify_date``,
    ``metadata_date``), ``gps``, ``software`` (every software string with the editor it
    names, if any), ``xmp_history``, ``orientation``, ``exif_dimensions``, ``thumbnail``,
    ``maker_notes``, ``has_exif`` / ``has_iptc`` / ``has_xmp``, ``stripped``, ``tags``
    (compact listing), ``problems`` and ``hashes`` (md5, sha256, phash).
    """
    raw = image.metadata
    exif, xmp, iptc = raw.exif, raw.xmp, raw.iptc
    all_tags = {**exif, **iptc, **xmp}

    dates: dict[str, str | None] = {}
    for name, keys, offset_key in (
        ("date_time_original", ("Exif.Photo.DateTimeOriginal", "Xmp.exif.DateTimeOriginal", "Xmp.photoshop.DateCreated"), "Exif.Photo.OffsetTimeOriginal"),
        ("create_date", ("Exif.Photo.DateTimeDigitized", "Xmp.xmp.CreateDate", "Xmp.exif.DateTimeDigitized"), "Exif.Photo.OffsetTimeDigitized"),
        ("modify_date", ("Exif.Image.DateTime",), "Exif.Photo.OffsetTime"),
        ("xmp_modify_date", ("Xmp.xmp.ModifyDate",), ""),
        ("metadata_date", ("Xmp.xmp.MetadataDate",), ""),
    ):
        parsed = next((p for p in (parse_date(all_tags.get(k), all_tags.get(offset_key)) for k in keys) if p), None)
        dates[name] = parsed[0] if parsed else None

    software: list[dict[str, str | None]] = []
    seen: set[str] = set()
    candidates = [(key, _first(all_tags, key)) for key in _SOFTWARE_KEYS]
    candidates += [(f"text.{key}", image.text.get(key)) for key in _TEXT_SOFTWARE_KEYS]
    history = _history(xmp)
    candidates += [(f"Xmp.xmpMM.History[{i + 1}]/stEvt:softwareAgent", ev.get("softwareAgent")) for i, ev in enumerate(history)]
    for key, value in candidates:
        if isinstance(value, str) and value.strip() and value.strip() not in seen:
            seen.add(value.strip())
            software.append({"tag": key, "value": value.strip()[:MAX_STRING], "editor": name_editor(value)})

    orientation_raw = _first(exif, "Exif.Image.Orientation") or _first(xmp, "Xmp.tiff.Orientation")
    orientation = int(orientation_raw) if orientation_raw and orientation_raw.isdigit() else None
    exif_w = parse_rational(exif.get("Exif.Photo.PixelXDimension"))
    exif_h = parse_rational(exif.get("Exif.Photo.PixelYDimension"))
    thumb = _thumbnail_size(raw.thumbnail, exif)
    maker_groups = sorted({group for group in (k.split(".")[1] for k in exif) if not _STANDARD_GROUP.match(group)})
    tags, omitted = _compact(all_tags)
    exposure_time = parse_rational(exif.get("Exif.Photo.ExposureTime"))
    iso = _first(exif, "Exif.Photo.ISOSpeedRatings", "Exif.Photo.PhotographicSensitivity")
    return {
        "reader": raw.reader,
        "make": _first(all_tags, "Exif.Image.Make", "Xmp.tiff.Make"),
        "model": _first(all_tags, "Exif.Image.Model", "Xmp.tiff.Model"),
        "lens": _first(all_tags, "Exif.Photo.LensModel", "Xmp.aux.Lens", "Xmp.exifEX.LensModel", "Exif.Canon.LensModel", "Exif.NikonLd3.LensIDNumber"),
        "camera_serial": _first(all_tags, "Exif.Photo.BodySerialNumber", "Xmp.aux.SerialNumber"),
        "exposure": {
            "exposure_time_s": exposure_time,
            "exposure_time": _exposure_text(exposure_time),
            "f_number": parse_rational(exif.get("Exif.Photo.FNumber")),
            "iso": int(iso.split()[0]) if iso and iso.split()[0].isdigit() else None,
            "focal_length_mm": parse_rational(exif.get("Exif.Photo.FocalLength")),
            "focal_length_35mm": parse_rational(exif.get("Exif.Photo.FocalLengthIn35mmFilm")),
        },
        "dates": dates,
        "gps": _gps(exif, xmp),
        "software": software,
        "xmp_history": history[:50],
        "derived_from": _first(xmp, "Xmp.xmpMM.DerivedFrom/stRef:documentID", "Xmp.xmpMM.DerivedFrom/stRef:instanceID"),
        "camera_raw_settings": any(k.startswith("Xmp.crs.") for k in xmp),
        "orientation": {"value": orientation, "meaning": _ORIENTATIONS.get(orientation or 0)} if orientation else None,
        "exif_dimensions": [int(exif_w), int(exif_h)] if exif_w and exif_h else None,
        "thumbnail": {"width": thumb[0], "height": thumb[1]} if thumb else None,
        "maker_notes": {"present": bool(maker_groups), "groups": maker_groups[:20]},
        "capture_tags": [k.rsplit(".", 1)[1] for k in _CAPTURE_KEYS if k in exif],
        "has_exif": bool(exif),
        "has_iptc": bool(iptc),
        "has_xmp": bool(xmp),
        "stripped": image.format is ImageFormat.JPEG and not exif,
        "tags": tags,
        "tags_omitted": omitted,
        "problems": list(raw.problems),
        "hashes": {
            "md5": image.md5,
            "sha256": image.sha256,
            "phash": perceptual_hash(image.luma),
        },
    }
