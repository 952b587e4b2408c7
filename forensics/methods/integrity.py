"""File integrity: is the file what its name says, complete, and nothing more than one image?

These are structural checks, not pixel analysis: a file whose extension names another
format, that ends before its end-of-image marker, that carries bytes after its end
(another image, an archive, a tool's trailer), or whose chunks fail their checksums has
been through something other than a camera and a plain save. Appended data is the classic
hiding place for a previous version of the picture or a polyglot payload; MPO files
(CIPA DC-007, "Multi-Picture Format", 2009) legitimately carry further JPEGs after the
first one, declared by an APP2 ``MPF`` index, and phones declare appended motion videos
and depth maps in their XMP (``GContainer`` / ``MotionPhoto``); those are recognised and
not counted. The approach follows T. Gloe, "Forensic analysis of ordered data structures
on the example of JPEG files", IEEE WIFS 2012, and the file-structure checks of
J. A. Redi, W. Taktak, J.-L. Dugelay, "Digital image forensics: a booklet for beginners",
Multimedia Tools and Applications 51, 2011.

The statistic is a sum of evidence points, each listed with its reason in
``details["reasons"]``.
"""

import re
from pathlib import PurePath
from typing import Any, ClassVar

from forensics.calibration import Logistic
from forensics.finding import Finding
from forensics.formats import IMAGE_EXTENSIONS, ImageFormat
from forensics.image import DecodedImage
from forensics.methods.base import Method

POINTS_EXTENSION = 35.0
POINTS_TRUNCATED = 40.0
POINTS_APPENDED_JPEG = 40.0
POINTS_APPENDED_ARCHIVE = 50.0
POINTS_APPENDED_UNKNOWN = 20.0
POINTS_APPENDED_VIDEO = 15.0
POINTS_METADATA_TRAILER = 10.0
POINTS_PER_PROBLEM = 15.0
MAX_PROBLEM_POINTS = 45.0
#: Trailing bytes up to this many are treated as writer padding, not appended content.
PADDING_BYTES = 16
#: How far into the file to look for an MPF index or XMP container declaration.
HEADER_SCAN_BYTES = 512 * 1024

_TRUNCATION_SYMPTOM = re.compile(r"end of the file|ends before|the file has")
_MPF = re.compile(rb"\xff\xe2..MPF\x00", re.DOTALL)
_XMP_CONTAINER = re.compile(rb"GContainer|Container:Directory|MotionPhoto|MicroVideo|GCamera:")
_ARCHIVES = (
    (b"PK\x03\x04", "ZIP archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"%PDF", "PDF document"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"GIF8", "GIF image"),
    (b"<?php", "PHP script"),
    (b"<script", "script"),
)
_IMAGE_EXTENSIONS = IMAGE_EXTENSIONS | {".jxl", ".psd", ".svg", ".ico", ".jp2", ".raw"}


class IntegrityMethod(Method):
    name: ClassVar[str] = "integrity"
    version: ClassVar[str] = "1.0"
    default_logistic: ClassVar[Logistic] = Logistic(center=35.0, scale=8.0)
    fit_logistic: ClassVar[bool] = False

    def examine(self, image: DecodedImage) -> Finding:
        reasons: list[dict[str, Any]] = []

        def add(code: str, points: float, text: str) -> None:
            reasons.append({"code": code, "points": points, "reason": text})

        extension = _extension_check(image)
        if extension["mismatch"]:
            add(
                "extension_mismatch",
                POINTS_EXTENSION,
                f"the file is named {extension['suffix']!r} but its content is {image.format.value.upper()} "
                f"(expected one of {', '.join(sorted(image.format.extensions))})",
            )

        container = image.container
        if container.truncated:
            what = "the JPEG end-of-image marker is missing" if image.format is ImageFormat.JPEG else "the file ends early"
            add("truncated", POINTS_TRUNCATED, f"{what}: the file is truncated or was cut")

        trailing = _trailing(image)
        if trailing["points"]:
            add(f"appended_{trailing['kind']}", trailing["points"], trailing["reason"])

        problems = list(container.problems)
        if container.truncated:  # the truncation is already counted; its symptoms are not counted twice
            problems = [p for p in problems if not _TRUNCATION_SYMPTOM.search(p)]
        if problems:
            add(
                "structure_problems",
                min(MAX_PROBLEM_POINTS, POINTS_PER_PROBLEM * len(problems)),
                f"{len(problems)} structural problem(s): {'; '.join(problems[:3])}",
            )

        statistic = sum(r["points"] for r in reasons)
        details = {
            "reasons": reasons,
            "extension": extension,
            "container": container.to_dict(),
            "trailing": {k: v for k, v in trailing.items() if k != "points"},
            "frames": image.frames,
            "multi_frame": image.frames > 1,
            "bytes": len(image.data),
        }
        return self.ok(statistic, _label(reasons), _summary(image, reasons, trailing, container.checked), details)


def _extension_check(image: DecodedImage) -> dict[str, Any]:
    suffix = PurePath(image.filename).suffix.lower() if image.filename else ""
    known = suffix in _IMAGE_EXTENSIONS
    return {
        "filename": image.filename,
        "suffix": suffix or None,
        "format": image.format.value,
        "expected": sorted(image.format.extensions),
        # Only a suffix that names another image format is a mismatch; none or ".bin" is not evidence.
        "mismatch": bool(suffix) and known and suffix not in image.format.extensions,
        "recognised_suffix": known,
    }


def _trailing(image: DecodedImage) -> dict[str, Any]:
    """Classify the bytes after the image's end and give the points they deserve."""
    container = image.container
    count = container.trailing_bytes
    result: dict[str, Any] = {"bytes": count, "kind": "none", "points": 0.0, "reason": ""}
    if count <= 0 or container.end_offset is None:
        return result
    tail = image.data[container.end_offset :]
    body = tail.lstrip(b"\x00")
    header = image.data[: min(container.end_offset, HEADER_SCAN_BYTES)]
    if count <= PADDING_BYTES:
        result.update(kind="padding", reason=f"{count} byte(s) of padding after the end (ignored)")
    elif container.trailing_starts_with_jpeg:
        if image.format is ImageFormat.JPEG and _MPF.search(header):
            result.update(kind="mpo", reason="further JPEG image(s) declared by an MPF index (multi-picture file, legitimate)")
        elif _XMP_CONTAINER.search(header):
            result.update(kind="declared_container", reason="a JPEG appended and declared in the XMP container directory (phone depth map or similar)")
        else:
            result.update(
                kind="jpeg",
                points=POINTS_APPENDED_JPEG,
                reason=f"another JPEG image ({count:,} bytes) is appended after the end of the image, with no MPF index declaring it",
            )
    elif body[4:8] == b"ftyp":
        declared = bool(_XMP_CONTAINER.search(header))
        result.update(
            kind="video",
            points=0.0 if declared else POINTS_APPENDED_VIDEO,
            reason=f"an MP4/QuickTime stream ({count:,} bytes) follows the image"
            + (" (a motion photo declared in the XMP)" if declared else ", not declared in the XMP"),
        )
    elif _metadata_trailer(body):
        result.update(
            kind="metadata_trailer",
            points=0.0 if body.endswith(b"SEFT") else POINTS_METADATA_TRAILER,
            reason=f"a metadata trailer ({_metadata_trailer(body)}, {count:,} bytes) follows the image",
        )
    else:
        archive = next((name for magic, name in _ARCHIVES if body.startswith(magic)), None)
        if archive:
            result.update(kind="archive", points=POINTS_APPENDED_ARCHIVE, reason=f"data that starts like a {archive} ({count:,} bytes) is appended after the end of the image")
        else:
            result.update(kind="unknown", points=POINTS_APPENDED_UNKNOWN, reason=f"{count:,} unexplained bytes follow the end of the image")
    return result


def _metadata_trailer(body: bytes) -> str | None:
    """Name trailers that metadata tools and phones write after the image end."""
    if body.startswith(b"AXS!"):
        return "AFCP (IPTC metadata)"
    if body.endswith(b"\xa1\xb2\xc3\xd4") or body.endswith(b"\xd4\xc3\xb2\xa1"):
        return "FotoStation metadata"
    if body.endswith(b"cbipcbbl") or body.startswith(b"\x1c\x02"):
        return "PhotoMechanic/IPTC metadata"
    if body.endswith(b"SEFT"):
        return "Samsung camera (SEFT)"
    return None


def _label(reasons: list[dict[str, Any]]) -> str:
    codes = [r["code"] for r in reasons]
    if not codes:
        return "file structure intact"
    names = {
        "extension_mismatch": "extension mismatch",
        "truncated": "truncated",
        "structure_problems": "corrupt segments",
    }
    return ", ".join(names.get(c, c.replace("_", " ")) for c in codes)


def _summary(image: DecodedImage, reasons: list[dict[str, Any]], trailing: dict[str, Any], walked: bool) -> str:
    fmt = image.format.value.upper()
    if reasons:
        sentence = "; ".join(r["reason"] for r in reasons)
        return sentence[0].upper() + sentence[1:] + "."
    note = f" ({trailing['reason']})" if trailing["kind"] not in ("none",) else ""
    if not walked:
        return f"The {fmt} file decodes, its name matches its content{note}; its layout was checked by the decoder only."
    return f"The {fmt} file is complete, its name matches its content and nothing unexplained follows the image{note}."
