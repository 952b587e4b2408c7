"""Service functions that own every query about cases and images, each filtered by the caller's tenant.

Routes validate, call these, enqueue after the commit, and return schemas. A case of
another tenant is indistinguishable from a missing one: :class:`NotFound` (404).
"""

import base64
import binascii
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, joinedload, selectinload

from forensics.formats import ImageFormat
from forensics.fusion import DECISION_LINE
from forensics.options import Sensitivity
from service.errors import NotFound
from service.models import Case, CaseStatus, Image, ImageStatus, utcnow
from service.storage import Storage, original_key
from service.webhooks import outbox

#: Originals stored at once when a case is created.
UPLOAD_THREADS = 8


def _run_all(calls: list[Callable[[], object]]) -> None:
    """Run storage calls, several in parallel (object stores are slow per request but not per byte);
    a single one in the caller's thread, since a thread of its own only adds a hand-over of the
    interpreter lock, which costs milliseconds when dozens of requests arrive at once."""
    if len(calls) == 1:
        calls[0]()
    elif calls:
        with ThreadPoolExecutor(max_workers=min(UPLOAD_THREADS, len(calls))) as pool:
            list(pool.map(lambda call: call(), calls))


@dataclass(frozen=True)
class Intake:
    """One uploaded file as the API received it: stored at ``path``, or refused with an error code;
    or an image URL (``source_url``) the worker fetches."""

    filename: str
    path: Path | None
    size: int
    sha256: str | None
    format: ImageFormat | None = None
    error_code: str | None = None
    error_detail: str | None = None
    source_url: str | None = None


def create_case(
    session: Session,
    storage: Storage,
    *,
    tenant_id: uuid.UUID,
    label: str | None,
    callback_url: str | None,
    intakes: list[Intake],
    stored: dict[str, str] | None = None,
    sensitivity: Sensitivity = Sensitivity.DEFAULT,
    anomaly_limits: dict[str, float] | None = None,
) -> tuple[Case, list[uuid.UUID]]:
    """Store the accepted originals (once per SHA-256) and create the case; returns it and the images to enqueue.

    Refused files become failed images carrying their reason, so the rest of the batch proceeds.
    ``stored`` maps SHA-256 -> a key already in storage (direct uploads), copied server-side
    to the case's original key instead of uploaded from a local file.
    """
    stored = stored or {}
    case = Case(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        label=label,
        callback_url=callback_url,
        sensitivity=sensitivity,
        image_count=len(intakes),
        anomaly_limits=anomaly_limits,
    )
    now = utcnow()
    uploads: dict[str, tuple[Path, str]] = {}
    copies: dict[str, str] = {}
    queued: list[uuid.UUID] = []
    for position, intake in enumerate(intakes):
        image = Image(id=uuid.uuid4(), position=position, filename=intake.filename, size_bytes=intake.size, sha256=intake.sha256)
        if intake.source_url is not None and intake.error_code is None:
            image.source_url = intake.source_url
            queued.append(image.id)  # enqueued_at stays None until the publish succeeds (service.dispatch)
        elif intake.error_code is not None or intake.sha256 is None or (intake.path is None and intake.sha256 not in stored):
            image.status = ImageStatus.FAILED
            image.error_code = intake.error_code or "ANALYSIS_ERROR"
            image.error_detail = intake.error_detail
            image.completed_at = now
        else:
            key = original_key(case.id, intake.sha256)
            if intake.path is not None:
                uploads.setdefault(key, (intake.path, intake.format.mime_type if intake.format else "application/octet-stream"))
            else:
                copies.setdefault(key, stored[intake.sha256])
            image.storage_key = key
            image.format = intake.format.value if intake.format else None
            queued.append(image.id)
        case.images.append(image)
    # Originals go to storage before the rows exist (a crash leaves an orphan object, never a row
    # without its file).
    _run_all(
        [partial(storage.put_file, key, path, mime) for key, (path, mime) in uploads.items()]
        + [partial(storage.copy, source, key) for key, source in copies.items()]
    )
    if not queued:
        case.status = CaseStatus.FAILED
        case.completed_at = now
    session.add(case)
    events = []
    if not queued:
        session.flush()
        events = outbox.add_case_event(session, case.id)
    session.commit()
    outbox.enqueue(events)
    return case, queued


#: Built once and run on the connection (no ORM layer): the status poll runs it on every request.
_FINGERPRINT = (
    select(Case.status, Case.updated_at, Image.status, func.count(Image.id), func.count(Image.sha256))
    .outerjoin(Image, Image.case_id == Case.id)
    .where(Case.id == bindparam("case_id"), Case.tenant_id == bindparam("tenant_id"))
    .group_by(Case.status, Case.updated_at, Image.status)
    .order_by(Image.status)
)


def status_fingerprint(session: Session, tenant_id: uuid.UUID, case_id: uuid.UUID) -> tuple[Any, ...]:
    """A value that changes whenever the case's status summary does, from one small aggregate query.

    It holds the case's status and update time and, per image status, the number of images and
    how many have a hash (an image fetched by URL gets its hash while still queued). Image
    statuses only move forward (queued, running, fusing, then completed or failed), and every
    forward move changes these counts; score, verdict and error are written by the same
    statement that moves an image to ``completed`` or ``failed``.
    """
    rows = session.connection().execute(_FINGERPRINT, {"case_id": case_id, "tenant_id": tenant_id}).all()
    if not rows:
        raise NotFound(f"no case {case_id}")
    return tuple(tuple(row) for row in rows)


def get_case(session: Session, tenant_id: uuid.UUID, case_id: uuid.UUID) -> Case:
    """The case and its images in one query."""
    case = (
        session.execute(select(Case).where(Case.id == case_id, Case.tenant_id == tenant_id).options(joinedload(Case.images)))
        .unique()
        .scalar_one_or_none()
    )
    if case is None:
        raise NotFound(f"no case {case_id}")
    return case


def get_case_with_findings(session: Session, tenant_id: uuid.UUID, case_id: uuid.UUID) -> Case:
    case = session.scalar(
        select(Case).where(Case.id == case_id, Case.tenant_id == tenant_id).options(selectinload(Case.images).selectinload(Image.findings))
    )
    if case is None:
        raise NotFound(f"no case {case_id}")
    return case


def get_image(session: Session, tenant_id: uuid.UUID, case_id: uuid.UUID, image_id: uuid.UUID) -> Image:
    image = session.scalar(
        select(Image)
        .join(Case, Case.id == Image.case_id)
        .where(Image.id == image_id, Image.case_id == case_id, Case.tenant_id == tenant_id)
        .options(selectinload(Image.findings))
    )
    if image is None:
        raise NotFound(f"no image {image_id} in case {case_id}")
    return image


def find_image_by_key(session: Session, case_id: uuid.UUID, key: str) -> Image | None:
    """The image a storage key belongs to (to name a served file); None when the key is not the case's."""
    return session.scalar(select(Image).where(Image.case_id == case_id, Image.storage_key == key).limit(1))


def progress(case: Case) -> dict[str, int]:
    """Counts of the case's images by public status (``fusing`` counts as running)."""
    counts = Counter(ImageStatus.RUNNING if i.status == ImageStatus.FUSING else i.status for i in case.images)
    return {
        "total": len(case.images),
        "queued": counts[ImageStatus.QUEUED],
        "running": counts[ImageStatus.RUNNING],
        "completed": counts[ImageStatus.COMPLETED],
        "failed": counts[ImageStatus.FAILED],
    }


def _encode_cursor(case: Case) -> str:
    raw = f"{case.created_at.isoformat()}|{case.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, case_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(case_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"invalid cursor {cursor!r}") from None


def list_cases(
    session: Session, tenant_id: uuid.UUID, *, limit: int, cursor: str | None = None, label: str | None = None
) -> tuple[list[Case], str | None]:
    """The tenant's cases, newest first, keyset-paginated on (created_at, id); returns the page and the next cursor.

    ``label``: only cases whose label contains it, ignoring case (``%`` and ``_`` match themselves).
    """
    query = select(Case).where(Case.tenant_id == tenant_id).order_by(Case.created_at.desc(), Case.id.desc()).limit(limit + 1)
    if label:
        pattern = label.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Case.label.ilike(f"%{pattern}%", escape="\\"))
    if cursor:
        created, case_id = _decode_cursor(cursor)
        query = query.where(or_(Case.created_at < created, and_(Case.created_at == created, Case.id < case_id)))
    cases = list(session.scalars(query))
    next_cursor = _encode_cursor(cases[limit - 1]) if len(cases) > limit else None
    return cases[:limit], next_cursor



@dataclass(frozen=True)
class Tally:
    """A case's images by outcome: analysed, failed, and analysed with a score over the decision line."""

    completed: int
    failed: int
    flagged: int


def tallies(session: Session, case_ids: list[uuid.UUID]) -> dict[uuid.UUID, Tally]:
    """:class:`Tally` of each case in ``case_ids`` (the caller has checked they are the tenant's), in one query."""
    if not case_ids:
        return {}
    rows = session.execute(
        select(
            Image.case_id,
            func.count(Image.id).filter(Image.status == ImageStatus.COMPLETED),
            func.count(Image.id).filter(Image.status == ImageStatus.FAILED),
            func.count(Image.id).filter(Image.status == ImageStatus.COMPLETED, Image.tamper_score >= DECISION_LINE),
        )
        .where(Image.case_id.in_(case_ids))
        .group_by(Image.case_id)
    )
    found = {case_id: Tally(completed, failed, flagged) for case_id, completed, failed, flagged in rows}
    return {case_id: found.get(case_id, Tally(0, 0, 0)) for case_id in case_ids}
