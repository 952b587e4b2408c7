"""Read an EXIF block (CIPA DC-008, "Exif 2.32", 2019: IFD0, Exif, GPS and interoperability
directories, maker notes, thumbnail) into exiv2-style keys and value strings.

The TIFF structure is walked by ExifRead (BSD-3-Clause), which also decodes the maker notes
of Canon, Nikon, Olympus, Casio, Sony, Fujifilm, Apple and DJI. Keys follow the names the
exiv2 library gives (``Exif.Image.Make``, ``Exif.Photo.DateTimeOriginal``,
``Exif.GPSInfo.GPSLatitude``; maker notes under ``Exif.<Make>.``), the names the API's
reports have always used, and values keep exiv2's text forms: rationals as ``"71/10"`` (in
lowest terms, as ExifRead gives them: ``3888000/876`` reads ``324000/73``), several values
space-separated, bytes as decimal numbers (``"48 50 50 49"``), a UserComment as
``charset=Ascii text``, Windows' XP tags as text.

ExifRead gives up on a whole file when an exception escapes one directory; the usual
culprit is a damaged maker note, so the block is read again without maker notes, and only
when that fails too is Pillow's independent EXIF parser used for IFD0, Exif and GPS. A
damaged directory thus never costs the readable tags of the others.
"""

import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

import exifread
from exifread.core.ifd_tag import IfdTag
from exifread.tags.fields import FieldType
from PIL import ExifTags, Image

_IFD_EXIF = 0x8769
_IFD_GPS = 0x8825
_USER_COMMENT = 0x9286
#: Windows' XPTitle, XPComment, XPAuthor, XPKeywords, XPSubject: UCS-2 text stored as bytes.
_XP_TEXT = frozenset(range(0x9C9B, 0x9CA0))
_POINTER_TAGS = frozenset({_IFD_EXIF, _IFD_GPS})

#: exiv2's names where Pillow's tag table names a tag otherwise.
_EXIV2_NAMES = {
    0x0201: "JPEGInterchangeFormat",
    0x0202: "JPEGInterchangeFormatLength",
    0x011E: "XPosition",
    0x011F: "YPosition",
    0x8769: "ExifTag",
    0x8825: "GPSTag",
    0x9290: "SubSecTime",
    0x9291: "SubSecTimeOriginal",
    0x9292: "SubSecTimeDigitized",
    0x9214: "SubjectArea",
    0xA000: "FlashpixVersion",
    0xA002: "PixelXDimension",
    0xA003: "PixelYDimension",
    0xA005: "InteroperabilityTag",
}
_STANDARD_NAMES = {**ExifTags.TAGS, **_EXIV2_NAMES}
_IOP_NAMES = {0x0001: "InteroperabilityIndex", 0x0002: "InteroperabilityVersion", 0x1000: "RelatedImageFileFormat", 0x1001: "RelatedImageWidth", 0x1002: "RelatedImageLength"}

#: exiv2's group of each ExifRead directory; "IFD <n>" and "EXIF SubIFD<n>" are numbered.
_GROUPS = {"Image": "Image", "Thumbnail": "Thumbnail", "EXIF": "Photo", "GPS": "GPSInfo", "Interoperability": "Iop"}
#: exiv2's maker-note group by the first word of the camera make (ExifRead decodes these makes).
_MAKER_GROUPS = {"nikon": "Nikon3", "olympus": "Olympus", "casio": "Casio", "sony": "Sony1", "fujifilm": "Fujifilm", "apple": "Apple", "dji": "DJI", "canon": "Canon"}
#: The character codes that open an EXIF UserComment, and exiv2's names for them.
_COMMENT_CHARSETS = {b"ASCII\x00\x00\x00": "Ascii", b"UNICODE\x00": "Unicode", b"JIS\x00\x00\x00\x00\x00": "Jis"}
#: ExifRead's keys: the directory, a space, the tag name (``Tag 0x1234`` when it has none).
_KEY = re.compile(r"^(EXIF SubIFD\d+|IFD \d+|Image|Thumbnail|EXIF|GPS|Interoperability|MakerNote) (.+)$")
_IFD_NUMBER = re.compile(r"^IFD (\d+)$")
_SUBIFD_NUMBER = re.compile(r"^EXIF SubIFD(\d+)$")


@dataclass(frozen=True, slots=True)
class ExifBlock:
    """What one EXIF block holds: tags by exiv2 key, the embedded thumbnail, the reader used."""

    tags: dict[str, str]
    thumbnail: bytes | None
    reader: str
    problems: tuple[str, ...]


def read_exif(tiff: bytes) -> ExifBlock:
    """Read the TIFF structure ``tiff``; never raises for malformed input (see ``problems``)."""
    problems: list[str] = []
    for details in (True, False):
        try:
            found = exifread.process_file(io.BytesIO(tiff), details=details, extract_thumbnail=True)
        except Exception as exc:  # ExifRead raises many types on hostile input
            what = "with its maker notes" if details else "without maker notes"
            problems.append(f"ExifRead could not read the EXIF {what}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        tags = _exiv2_tags(found, tiff)
        if tags:
            thumbnail = found.get("JPEGThumbnail") or found.get("TIFFThumbnail")
            return ExifBlock(tags=tags, thumbnail=thumbnail if isinstance(thumbnail, bytes) and thumbnail else None, reader="exifread", problems=tuple(problems))
        break
    tags = _pillow_exif(tiff, problems)
    return ExifBlock(tags=tags, thumbnail=None, reader="pillow" if tags else "none", problems=tuple(problems))


def _exiv2_tags(found: dict[str, Any], tiff: bytes) -> dict[str, str]:
    make = found.get("Image Make")
    maker_group = _maker_group(make.printable if isinstance(make, IfdTag) else "")
    out: dict[str, str] = {}
    for key, tag in found.items():
        match = _KEY.match(key)
        if not isinstance(tag, IfdTag) or match is None:
            continue
        ifd, name = match.groups()
        if ifd == "MakerNote":
            group, name = maker_group, name.removeprefix("Tag ").replace(" ", "")
        else:
            group = _group(ifd)
            name = _tag_name(group, tag.tag)
        out[f"Exif.{group}.{name}"] = _value(tag, tiff, is_maker_note=ifd == "MakerNote")
    return out


def _group(ifd: str) -> str:
    if match := _IFD_NUMBER.match(ifd):
        return f"Image{int(match.group(1))}"
    if match := _SUBIFD_NUMBER.match(ifd):
        return f"SubImage{int(match.group(1)) + 1}"
    return _GROUPS[ifd]


def _maker_group(make: str) -> str:
    word = (make.split() or ["MakerNote"])[0].lower()
    return _MAKER_GROUPS.get(word, word.capitalize() or "MakerNote")


def _tag_name(group: str, tag: int) -> str:
    """exiv2's name of ``tag`` in a standard directory, or its number (``0x1234``) as exiv2 writes unknown tags."""
    names = ExifTags.GPSTAGS if group == "GPSInfo" else _IOP_NAMES if group == "Iop" else _STANDARD_NAMES
    return names.get(tag) or f"0x{tag:04x}"


def _value(tag: IfdTag, tiff: bytes, *, is_maker_note: bool) -> str:
    """exiv2's text form of a tag's values."""
    values = tag.values
    kind = tag.field_type
    if kind == FieldType.PROPRIETARY:  # a maker-note field ExifRead decoded itself
        return str(tag.printable)
    if kind == FieldType.ASCII:
        return values.decode("latin-1") if isinstance(values, bytes) else str(values)
    if not values and tag.field_length and not is_maker_note:
        # ExifRead skips arrays of 1000 values or more; read them from the block directly.
        values = list(tiff[tag.field_offset : tag.field_offset + tag.field_length]) if kind in (FieldType.BYTE, FieldType.UNDEFINED) else []
    if tag.tag == _USER_COMMENT and kind == FieldType.UNDEFINED and not is_maker_note:
        return _user_comment(bytes(v & 0xFF for v in values))
    if tag.tag in _XP_TEXT and kind == FieldType.BYTE and not is_maker_note:
        return bytes(v & 0xFF for v in values).decode("utf-16-le", "replace").split("\x00", 1)[0]
    if kind in (FieldType.RATIO, FieldType.SIGNED_RATIO):
        return " ".join(f"{v.numerator}/{v.denominator}" for v in values)
    if kind in (FieldType.FLOAT_32, FieldType.FLOAT_64):
        return " ".join(f"{v[0] if isinstance(v, tuple) else v:.15g}" for v in values)
    return " ".join(str(v) for v in values) if isinstance(values, list) else str(values)


def _user_comment(raw: bytes) -> str:
    """EXIF UserComment as exiv2 shows it: ``charset=Ascii text``, or the bare text when the code is undefined."""
    head, body = raw[:8], raw[8:]
    charset = _COMMENT_CHARSETS.get(head)
    if charset == "Unicode":
        candidates = [body.decode("utf-16-be", "replace"), body.decode("utf-16-le", "replace")]
        text = max(candidates, key=lambda s: sum(c.isascii() and c.isprintable() for c in s))
    else:
        text = body.decode("utf-8", "replace")
    text = text.split("\x00", 1)[0]
    return f"charset={charset} {text}" if charset else text


def _pillow_exif(tiff: bytes, problems: list[str]) -> dict[str, str]:
    """IFD0, Exif and GPS through Pillow's parser, renamed to exiv2's keys.

    Pillow warns about each directory it skips; the warnings become ``problems``.
    """
    out: dict[str, str] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exif = Image.Exif()
            exif.load(b"Exif\x00\x00" + tiff)
            _pillow_ifd(exif, "Exif.Image", out)
            _pillow_ifd(exif.get_ifd(_IFD_EXIF), "Exif.Photo", out)
            _pillow_ifd(exif.get_ifd(_IFD_GPS), "Exif.GPSInfo", out)
        except Exception as exc:  # Pillow's EXIF parser raises many types on hostile input
            problems.append(f"Pillow could not read the EXIF: {type(exc).__name__}: {str(exc)[:200]}")
    problems += [f"Pillow: {warning.message}"[:200] for warning in caught]
    return out


def _pillow_ifd(ifd: Any, group: str, out: dict[str, str]) -> None:
    for tag, value in ifd.items():
        if tag in _POINTER_TAGS and group == "Exif.Image":
            continue
        name = _tag_name(group.removeprefix("Exif."), tag)
        text = _pillow_value(value)
        if text is not None:
            out[f"{group}.{name}"] = text


def _pillow_value(value: Any) -> str | None:
    if isinstance(value, bytes):
        return " ".join(str(b) for b in value)
    if isinstance(value, tuple):
        parts = [_pillow_value(v) for v in value]
        return " ".join(p for p in parts if p is not None)
    if hasattr(value, "numerator") and hasattr(value, "denominator") and not isinstance(value, int):
        return f"{value.numerator}/{value.denominator}"
    return str(value).rstrip("\x00").strip()
