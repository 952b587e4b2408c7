"""The editors' PDF: what it says (verdicts in words, files, hashes, method and model versions), that
markup a file brings is printed as text, that it is in the dossier zip, and that the routes serve it
to the case's tenant only.

The content tests build the case in memory (ORM objects, no database) and write the PDF without
page compression, so the text drawn is read back from the content streams with a small parser.
"""

import io
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from pypdf import PdfReader
from sqlalchemy import update

from service import pdf_report
from service.models import Case, FindingRow, Image
from service.reports import write_report_zip
from service.storage import LocalStorage
from tests.platform_support import api_app, bearer, make_tenant

pytestmark = pytest.mark.timeout(120)

HOSTILE_NAME = '<b>bold</b> & <font size="40">big</font> (1).jpg'
HOSTILE_MAKE = '<font color="red">Evil</font> <para> <b'
NOW = datetime(2026, 12, 6, 9, 14, tzinfo=UTC)


def _overlay(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _image(case: Case, position: int, name: str, score: float | None, verdict: str | None, storage: LocalStorage | None) -> Image:
    image = Image(
        id=uuid.uuid4(),
        case_id=case.id,
        position=position,
        filename=name,
        status="completed",
        sha256=f"{position + 10:064x}",
        format="jpeg",
        width=1280,
        height=960,
        file_info={"format": "jpeg", "width": 1280, "height": 960, "bytes": 123456},
        image_metadata={
            "make": HOSTILE_MAKE,
            "model": "EOS R5",
            "dates": {"date_time_original": "2026:11:02 10:11:12"},
            "software": [{"value": "Adobe Photoshop 25.0", "editor": "Adobe Photoshop"}],
            "gps": {"latitude": 48.8584, "longitude": 2.2945},
            "hashes": {"md5": f"{position + 7:032x}", "phash": "c3c3c3c33c3c3c3c"},
        },
        tamper_score=score,
        verdict=verdict,
        fused={"summary": "Traces of local editing in one region.", "contributions": {"ela": 1.25, "noise": -0.5}, "bias": -2.0},
        created_at=NOW,
        completed_at=NOW,
    )
    if storage is not None:
        image.overlay_key = f"cases/{case.id}/images/{image.id}/overlay.jpg"
        storage.put_bytes(image.overlay_key, _overlay(seed=position), "image/jpeg")
    image.findings.append(
        FindingRow(
            method="ela",
            position=0,
            status="ok",
            method_version="2.3",
            score=71.0,
            label="Uneven error level",
            summary="One region differs.",
        )
    )
    image.findings.append(
        FindingRow(
            method="deep_scan",
            position=1,
            status="ok",
            method_version="1.4",
            score=40.0,
            label="Nothing unusual",
            summary="Blocks are consistent.",
            details={"model": {"name": "deep_scan", "version": "1.2", "sha256": "a1b2c3d4e5f60718"}},
        )
    )
    return image


def _case(storage: LocalStorage | None) -> Case:
    case = Case(id=uuid.uuid4(), label="Flood photos", sensitivity="thorough", status="completed", created_at=NOW, completed_at=NOW)
    case.images.append(_image(case, 0, "calm.jpg", 12.0, "no_manipulation_detected", storage))
    case.images.append(_image(case, 1, HOSTILE_NAME, 87.0, "likely_manipulated", storage))
    return case


def pdf_text(data: bytes) -> str:
    """The text of every page, as a reader extracts it (pypdf, through the embedded fonts' ToUnicode maps)."""
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def _case_pdf(case: Case, storage: LocalStorage) -> bytes:
    out = io.BytesIO()
    pdf_report.write_case_pdf(case, storage, out, compress=False)
    return out.getvalue()


def test_the_case_pdf_says_verdicts_files_hashes_and_versions_flagged_first(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    case = _case(storage)
    data = _case_pdf(case, storage)
    shown = pdf_text(data)
    for expected in (
        "Flood photos",
        "Likely manipulated",
        "No manipulation detected",
        "calm.jpg",
        f"{10:064x}",  # SHA-256
        f"{8:032x}",  # MD5 of the second image
        "Uneven error level",
        "2.3",
        "1.4",
        "deep_scan 1.2 · SHA-256 a1b2c3d4e5f60718",
        "thorough",
        "Evidence chain",
        "What drove the score",
        "+1.25",
        f"engine {pdf_report.engine_version()}",
    ):
        assert expected in shown, expected
    assert shown.index("tamper score 87") < shown.index("tamper score 12"), "the flagged image comes first"
    assert data.count(b"/DCTDecode") >= 2, "each overlay is embedded as a JPEG"
    assert "Anomalies" not in shown and "Near-duplicates" not in shown, "sections the report has no data for are left out"


def test_markup_from_a_file_is_printed_as_text(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    shown = pdf_text(_case_pdf(_case(storage), storage))
    assert HOSTILE_NAME in shown
    assert '<font color="red">Evil</font> <para> <b' in shown
    assert pdf_report.text("a<b>\x00c") == "a&lt;b&gt;c"


def test_anomalies_and_near_duplicates_are_shown_when_the_report_has_them(tmp_path: Path) -> None:
    extra = {
        "anomalies": [{"kind": "date_mismatch", "detail": "<i>taken</i> after modified"}],
        "near_duplicates": [{"file": "other.jpg", "distance": 3}],
    }
    storage = LocalStorage(tmp_path)
    out = io.BytesIO()
    pdf_report.write_image_pdf(_case(storage).images[1], storage, out, extra=extra, compress=False)
    shown = pdf_text(out.getvalue())
    assert "Anomalies" in shown and "kind: date_mismatch; detail: <i>taken</i> after modified" in shown
    assert "Near-duplicates" in shown and "file: other.jpg; distance: 3" in shown
    assert HOSTILE_NAME in shown and "Likely manipulated" in shown


def test_names_in_greek_and_cyrillic_print_as_written(tmp_path: Path) -> None:
    """The embedded DejaVu Sans has their glyphs; the PDF core fonts would print Latin-1 only."""
    name = "Повінь у Києві — Αθήνα.jpg"
    storage = LocalStorage(tmp_path)
    case = _case(storage)
    case.images[0].filename = name
    shown = pdf_text(_case_pdf(case, storage))
    assert "Повінь у Києві" in shown and "Αθήνα" in shown


def test_a_missing_overlay_or_an_unscored_image_still_gives_a_pdf(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    case = _case(storage)
    storage.delete(case.images[0].overlay_key)
    case.images[1].status, case.images[1].tamper_score, case.images[1].verdict = "failed", None, None
    case.images[1].error_code, case.images[1].error_detail = "VALIDATION_ERROR", "truncated"
    shown = pdf_text(_case_pdf(case, storage))
    assert "The overlay could not be read from storage." in shown
    assert "Status: Failed" in shown and "The picture is damaged or cut short and cannot be decoded. truncated" in shown


def test_the_dossier_zip_holds_the_case_pdf(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    out = io.BytesIO()
    write_report_zip(_case(storage), storage, out)
    with zipfile.ZipFile(out) as archive:
        data = archive.read("report.pdf")
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:]


def test_a_large_picture_is_downscaled_before_it_is_embedded() -> None:
    big = _overlay(2400, 1800)
    small = pdf_report.picture_jpeg(big)
    with PILImage.open(io.BytesIO(small)) as picture:
        assert picture.format == "JPEG" and max(picture.size) == pdf_report.PICTURE_SIDE
    fitting = _overlay(800, 600)
    assert pdf_report.picture_jpeg(fitting) is fitting


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with api_app(tmp_path_factory.mktemp("pdf")) as app:
        yield app


def test_the_routes_serve_the_pdfs_to_the_case_tenant_only(app: Any) -> None:
    from fastapi.testclient import TestClient

    from service.db import session_scope
    from service.storage import get_storage

    tenant_id, key = make_tenant()
    _, other_key = make_tenant()
    storage = get_storage()
    case = _case(storage)  # type: ignore[arg-type]
    case.tenant_id = tenant_id
    case_id, image_id = case.id, case.images[1].id
    with session_scope() as session:
        session.add(case)
        session.commit()
    with TestClient(app) as client:
        answer = client.get(f"/v1/cases/{case_id}/report.pdf", headers=bearer(key))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/pdf"
        assert f'filename="case_{case_id}.pdf"' in answer.headers["content-disposition"]
        assert answer.content.startswith(b"%PDF-")
        one = client.get(f"/v1/cases/{case_id}/images/{image_id}/report.pdf", headers=bearer(key))
        assert one.status_code == 200 and one.headers["content-type"] == "application/pdf" and one.content.startswith(b"%PDF-")
        for path in (f"/v1/cases/{case_id}/report.pdf", f"/v1/cases/{case_id}/images/{image_id}/report.pdf"):
            refused = client.get(path, headers=bearer(other_key))
            assert refused.status_code == 404 and refused.headers["content-type"] == "application/problem+json"
            assert client.get(path).status_code == 401
        assert client.get(f"/v1/cases/{case_id}/images/{uuid.uuid4()}/report.pdf", headers=bearer(key)).status_code == 404


def test_a_closed_case_is_served_the_pdf_the_worker_stored(app: Any) -> None:
    from fastapi.testclient import TestClient

    from service import case_pdf
    from service.db import session_scope
    from service.storage import get_storage

    tenant_id, key = make_tenant()
    storage = get_storage()
    case = _case(storage)  # type: ignore[arg-type]
    case.tenant_id = tenant_id
    case_id = case.id
    with session_scope() as session:
        session.add(case)
        session.commit()
    stored = case_pdf.store(case_id)  # the worker's task, run here without a worker
    assert stored == f"cases/{case_id}/report-20261206T091400000000Z.pdf" and case_pdf.store(case_id) == stored
    data = storage.get_bytes(stored)
    assert "Flood photos" in pdf_text(data)
    with TestClient(app) as client:
        served = client.get(f"/v1/cases/{case_id}/report.pdf", headers=bearer(key))
        assert served.status_code == 200 and served.content == data  # byte for byte: not rendered again
        dossier = zipfile.ZipFile(io.BytesIO(client.get(f"/v1/cases/{case_id}/report.zip", headers=bearer(key)).content))
        assert dossier.read("report.pdf") == data
        # a case that closes again gets a new PDF: the old one is never served for it
        with session_scope() as session:
            session.execute(
                update(Case).where(Case.id == case_id).values(completed_at=datetime(2026, 12, 7, tzinfo=UTC), label="Floods, again")
            )
            session.commit()
        again = client.get(f"/v1/cases/{case_id}/report.pdf", headers=bearer(key))
        assert again.status_code == 200 and again.content != data and "Floods, again" in pdf_text(again.content)
    # an open case has no stored PDF: it is rendered on request from what it holds
    with session_scope() as session:
        session.execute(update(Case).where(Case.id == case_id).values(status="running", completed_at=None))
        session.commit()
    assert case_pdf.store(case_id) is None
