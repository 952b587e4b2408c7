"""The reports people and programs read: one image's full report, the case summary, the dossier zip.

Reports name files by storage key through a ``link`` function the caller gives: the API
turns keys into URLs (presigned or served), the zip into file names inside the archive.
"""

import json
import re
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import PurePosixPath
from typing import IO, Any

from forensics.render import colour_png, from_gray_png
from forensics.resample import display_size
from service import anomalies as anomaly_rules
from service.cases import progress
from service.models import Case, Image
from service.storage import Storage

#: Storage key -> where the reader finds that file (a URL for the API, a name inside the dossier zip); None when nowhere.
Link = Callable[[str], str | None]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def image_error(image: Image) -> dict[str, str | None] | None:
    if image.error_code is None:
        return None
    return {"code": image.error_code, "detail": image.error_detail}


def image_report(
    image: Image,
    link: Link,
    near_duplicates: list[dict[str, Any]] | None = None,
    *,
    anomalies: list[dict[str, Any]] | None = None,
    reverse_search: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything known about one image: file, metadata, fused result, every finding with its maps, the
    tenant's other images that show the same picture (``near_duplicates``, :mod:`service.duplicates`), its
    contextual anomalies within the case (:mod:`service.anomalies`) and whether it was shared for reverse
    image search (:mod:`service.reverse_search`); the last three are looked up by the caller."""
    fused = image.fused or {}
    return {
        "id": str(image.id),
        "case_id": str(image.case_id),
        "file": image.filename,
        "status": image.status,
        "error": image_error(image),
        "sha256": image.sha256,
        "tamper_score": image.tamper_score if image.tamper_score is None else round(image.tamper_score, 1),
        "verdict": image.verdict,
        "confidence": fused.get("confidence"),
        "summary": fused.get("summary"),
        "issues": fused.get("issues", []),
        "positives": fused.get("positives", []),
        "recommendation": fused.get("recommendation"),
        "bias": fused.get("bias"),
        "contributions": fused.get("contributions", {}),
        "image": image.file_info,
        "metadata": image.image_metadata,
        "original_url": link(image.storage_key) if image.storage_key else None,
        "heatmap_url": link(image.heatmap_key) if image.heatmap_key else None,
        "overlay_url": link(image.overlay_key) if image.overlay_key else None,
        "findings": [
            {
                "method": f.method,
                "version": f.method_version,
                "status": f.status,
                "score": None if f.score is None else round(f.score, 1),
                "label": f.label,
                "summary": f.summary,
                "details": f.details or {},
                "heatmap_url": link(f.heatmap_key) if f.heatmap_key else None,
                "view_urls": {view: link(key) for view, key in (f.view_keys or {}).items()},
                "seconds": f.seconds,
            }
            for f in image.findings
        ],
        "created_at": _iso(image.created_at),
        "completed_at": _iso(image.completed_at),
        "seconds": image.seconds,
        "near_duplicates": near_duplicates or [],
        "anomalies": anomalies or [],
        "reverse_search": reverse_search,
    }


def batch_summary(case: Case, anomalies: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The case's summary; with ``anomalies`` (:func:`service.anomalies.for_case`), each image's anomaly rules
    and their count per rule for the case."""
    found = anomalies or {}
    summary: dict[str, Any] = {
        "case_id": str(case.id),
        "label": case.label,
        "status": case.status,
        "created_at": _iso(case.created_at),
        "completed_at": _iso(case.completed_at),
        "progress": progress(case),
        "images": [
            {
                "id": str(i.id),
                "file": i.filename,
                "sha256": i.sha256,
                "status": i.status,
                "tamper_score": None if i.tamper_score is None else round(i.tamper_score, 1),
                "verdict": i.verdict,
                "error": image_error(i),
                "folder": _folder(i),
            }
            for i in case.images
        ],
    }
    if anomalies is not None:
        summary["anomalies"] = anomaly_rules.summary(found)
        for entry in summary["images"]:
            entry["anomalies"] = sorted({a["rule"] for a in found.get(entry["id"], [])})
    return summary


def _folder(image: Image) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", image.filename.rsplit(".", 1)[0])[:80] or "image"
    return f"{image.position + 1:03d}_{stem}"


def write_report_zip(case: Case, storage: Storage, out: IO[bytes], anomalies: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """The dossier's layout: ``batch_summary.json``, ``report.pdf`` (the editors' PDF of the whole case, as the
    worker stored it when the case closed, else rendered now: :mod:`service.case_pdf`),
    and per image a folder with ``forensic_report.json``, colour heatmaps per method (``heatmap_<method>.png``),
    views, the fused heatmap and the overlay.

    ``case`` must have its images and their findings loaded; ``anomalies`` (:func:`service.anomalies.for_case`),
    when given, go into the summary, each image's report and the PDF.
    """
    from service import case_pdf  # imports this module

    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("batch_summary.json", json.dumps(batch_summary(case, anomalies), indent=2))
        pdf = zipfile.ZipInfo("report.pdf", date_time=datetime.now().timetuple()[:6])
        pdf.compress_type = zipfile.ZIP_STORED  # its streams are compressed already
        with archive.open(pdf, "w") as stream:
            case_pdf.write(case, storage, stream, anomalies or {})
        for image in case.images:
            folder = _folder(image)
            names: dict[str, str] = {}
            size = display_size(image.width, image.height) if image.width and image.height else None
            for finding in image.findings:
                if finding.heatmap_key and size:
                    names[finding.heatmap_key] = f"heatmap_{finding.method}.png"
                    gray = from_gray_png(storage.get_bytes(finding.heatmap_key))
                    archive.writestr(f"{folder}/heatmap_{finding.method}.png", colour_png(gray, size), zipfile.ZIP_STORED)
                for view, key in (finding.view_keys or {}).items():
                    names[key] = f"view_{finding.method}_{view}{PurePosixPath(key).suffix}"
                    archive.writestr(f"{folder}/{names[key]}", storage.get_bytes(key), zipfile.ZIP_STORED)
            if image.heatmap_key and size:
                names[image.heatmap_key] = "heatmap_fused.png"
                gray = from_gray_png(storage.get_bytes(image.heatmap_key))
                archive.writestr(f"{folder}/heatmap_fused.png", colour_png(gray, size), zipfile.ZIP_STORED)
            if image.overlay_key:
                names[image.overlay_key] = f"overlay_fused{PurePosixPath(image.overlay_key).suffix}"
                archive.writestr(f"{folder}/{names[image.overlay_key]}", storage.get_bytes(image.overlay_key), zipfile.ZIP_STORED)
            report = image_report(image, names.get, anomalies=(anomalies or {}).get(str(image.id)))
            archive.writestr(f"{folder}/forensic_report.json", json.dumps(report, indent=2, default=str))


def pdf_anomalies(listed: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The PDF lists each anomaly as its rule and plain-words message (the values are in the JSON report)."""
    return [{"rule": a["rule"], "detail": a["message"]} for a in listed]
