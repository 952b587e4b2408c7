"""Name IPTC-IIM datasets (IPTC, "Information Interchange Model" 4.2, 2014) as exiv2 does.

Pillow's ``IptcImagePlugin.getiptcinfo`` reads the datasets (record, number, bytes) of a
JPEG's Photoshop APP13 block or a TIFF's IPTC tag; this module gives them exiv2's keys
(``Iptc.Envelope.*`` for record 1, ``Iptc.Application2.*`` for record 2) and text values:
repeatable datasets (keywords, bylines...) as lists, two-byte binary numbers as decimal
text, dates and times as ``2005-12-14`` and ``14:39:47+00:00``, strings as UTF-8 when the
envelope says so or when they decode as UTF-8, Latin-1 otherwise.
"""

import re
from collections.abc import Iterable
from typing import Any

#: Record 1 (envelope) dataset names.
ENVELOPE = {
    0: "ModelVersion", 5: "Destination", 20: "FileFormat", 22: "FileVersion", 30: "ServiceId", 40: "EnvelopeNumber",
    50: "ProductId", 60: "EnvelopePriority", 70: "DateSent", 80: "TimeSent", 90: "CharacterSet", 100: "UNO",
    120: "ARMId", 122: "ARMVersion",
}
#: Record 2 (application) dataset names.
APPLICATION2 = {
    0: "RecordVersion", 3: "ObjectType", 4: "ObjectAttribute", 5: "ObjectName", 7: "EditStatus", 8: "EditorialUpdate",
    10: "Urgency", 12: "Subject", 15: "Category", 20: "SuppCategory", 22: "FixtureId", 25: "Keywords",
    26: "LocationCode", 27: "LocationName", 30: "ReleaseDate", 35: "ReleaseTime", 37: "ExpirationDate",
    38: "ExpirationTime", 40: "SpecialInstructions", 42: "ActionAdvised", 45: "ReferenceService", 47: "ReferenceDate",
    50: "ReferenceNumber", 55: "DateCreated", 60: "TimeCreated", 62: "DigitizationDate", 63: "DigitizationTime",
    65: "Program", 70: "ProgramVersion", 75: "ObjectCycle", 80: "Byline", 85: "BylineTitle", 90: "City",
    92: "SubLocation", 95: "ProvinceState", 100: "CountryCode", 101: "CountryName", 103: "TransmissionReference",
    105: "Headline", 110: "Credit", 115: "Source", 116: "Copyright", 118: "Contact", 120: "Caption",
    121: "LocalCaption", 122: "Writer", 125: "RasterizedCaption", 130: "ImageType", 131: "ImageOrientation",
    135: "Language", 150: "AudioType", 151: "AudioRate", 152: "AudioResolution", 153: "AudioDuration",
    154: "AudioOutcue", 184: "JobId", 185: "MasterDocumentId", 186: "ShortDocumentId", 187: "UniqueDocumentId",
    188: "OwnerId", 200: "PreviewFormat", 201: "PreviewVersion", 202: "Preview",
}
_RECORDS = {1: ("Envelope", ENVELOPE), 2: ("Application2", APPLICATION2)}
#: Datasets the standard lets repeat: exiv2 lists their values.
REPEATABLE = frozenset({(1, 5), (1, 50), (2, 4), (2, 12), (2, 20), (2, 25), (2, 26), (2, 27), (2, 45), (2, 47), (2, 50), (2, 80), (2, 85), (2, 118), (2, 122)})
#: Dates (``CCYYMMDD``), shown as exiv2 does: ``CCYY-MM-DD``.
DATES = frozenset({(1, 70), (2, 30), (2, 37), (2, 47), (2, 55), (2, 62)})
#: Times (``HHMMSS±HHMM``), shown as exiv2 does: ``HH:MM:SS±HH:MM``.
TIMES = frozenset({(1, 80), (2, 35), (2, 38), (2, 60), (2, 63)})
#: Datasets stored as two-byte binary numbers.
BINARY_NUMBERS = frozenset({(1, 0), (1, 20), (1, 22), (1, 120), (1, 122), (2, 0), (2, 200), (2, 201)})
_UTF8_MARKER = b"\x1b%G"
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TIME = re.compile(r"^(\d{2})(\d{2})(\d{2})(?:([+-]\d{2})(\d{2}))?$")


def name_datasets(datasets: Iterable[tuple[tuple[int, int], tuple[bytes, ...]]]) -> dict[str, Any]:
    """exiv2 keys and text values of IIM ``datasets`` ((record, number), values)."""
    found = dict(datasets)
    utf8 = _UTF8_MARKER in found.get((1, 90), ())
    out: dict[str, Any] = {}
    for (record, number), values in found.items():
        group, names = _RECORDS.get(record, (f"Record{record}", {}))
        key = f"Iptc.{group}.{names.get(number, f'0x{number:04x}')}"
        texts = [_text((record, number), value, utf8) for value in values]
        out[key] = texts if (record, number) in REPEATABLE else texts[-1] if texts else ""
    return out


def _text(dataset: tuple[int, int], value: bytes, utf8: bool) -> str:
    if dataset in BINARY_NUMBERS and len(value) <= 4:
        return str(int.from_bytes(value, "big"))
    if dataset == (2, 202):
        return " ".join(str(b) for b in value)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("utf-8" if utf8 else "latin-1", "replace")
    if dataset in DATES and (date := _DATE.match(text)):
        return "-".join(date.groups())
    if dataset in TIMES and (time := _TIME.match(text)):
        hour, minute, second, zone_hour, zone_minute = time.groups()
        return f"{hour}:{minute}:{second}{zone_hour or '+00'}:{zone_minute or '00'}"
    return text
