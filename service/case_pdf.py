"""A closed case's PDF, rendered by a worker when the case closes and kept in storage, so that the API
serves it (and puts it in the dossier zip) without rendering it: a 100-image case's PDF takes several
seconds of CPU and tens of MB, which belong in a worker process, not in the API's thread pool.

Everything the case PDF prints is settled when the case closes: the images' reports, and the
anomalies, which count only the case's own images and those the tenant stored before the case
was opened (:func:`service.anomalies.for_case`). The key names the closing time, so a case that
closes again (a re-run) gets a new PDF, never the old one. While the case is open, or until the
worker has stored it, the API renders the PDF on request from the same function.
"""

import logging
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from service import anomalies
from service.db import session_scope
from service.models import Case, CaseStatus, Image
from service.pdf_report import write_case_pdf
from service.reports import pdf_anomalies
from service.settings import get_settings
from service.storage import Storage, get_storage

logger = logging.getLogger(__name__)


def stored_key(case: Case) -> str | None:
    """Where the case's PDF is kept once the case has closed; None while it is open."""
    if case.completed_at is None or case.status not in (CaseStatus.COMPLETED, CaseStatus.FAILED):
        return None
    return f"cases/{case.id}/report-{case.completed_at.strftime('%Y%m%dT%H%M%S%fZ')}.pdf"


def stored(case: Case, storage: Storage) -> str | None:
    """The key of the PDF the worker stored for this closing of the case, if it has."""
    key = stored_key(case)
    return key if key is not None and storage.exists(key) else None


def copy(storage: Storage, key: str, out: IO[bytes]) -> None:
    with storage.open(key) as stream:
        shutil.copyfileobj(stream, out)


def render(case: Case, storage: Storage, out: IO[bytes], found: Mapping[str, list[dict[str, Any]]]) -> None:
    """Render the case's PDF into ``out`` with the anomalies ``found`` (:func:`service.anomalies.for_case`);
    ``case`` has its images and findings loaded."""
    write_case_pdf(case, storage, out, extra={k: {"anomalies": pdf_anomalies(v)} for k, v in found.items()})


def write(case: Case, storage: Storage, out: IO[bytes], found: Mapping[str, list[dict[str, Any]]]) -> None:
    """The case's PDF into ``out``: the stored one when the worker has rendered it for this closing, else
    rendered now (:func:`render`)."""
    if (key := stored(case, storage)) is not None:
        copy(storage, key, out)
    else:
        render(case, storage, out, found)


def store(case_id: uuid.UUID) -> str | None:
    """Render a closed case's PDF and store it (the worker's task when the case closes); its key, or None
    for a case that is gone or open again. Idempotent: a PDF already stored for this closing is kept."""
    storage, settings = get_storage(), get_settings()
    with session_scope() as session:
        case = session.scalar(select(Case).where(Case.id == case_id).options(selectinload(Case.images).selectinload(Image.findings)))
        if case is None or (key := stored_key(case)) is None:
            return None
        if storage.exists(key):
            return key
        with tempfile.TemporaryDirectory(prefix="forensics-pdf-") as folder:
            path = Path(folder) / "report.pdf"
            with path.open("wb") as out:
                render(case, storage, out, anomalies.for_case(session, settings, case))
            storage.put_file(key, path, "application/pdf")
    logger.info("stored the PDF of case %s", case_id)
    return key
