"""The analysis fan-out as service functions, one per task: prepare, run a method, fuse, reconcile.

Per image: :func:`prepare_image` fetches the original, validates and decodes it, records
its file information and creates one pending finding per method; then one
:func:`run_method` per method runs anywhere; the finisher that sees every finding done
wins a conditional update (``running -> fusing``) and enqueues :func:`fuse_image`, which
stores the fused result and the report's metadata section; the case completes through
another conditional update that exactly one finisher wins. Every function re-reads state
and returns quietly when the work is already done, so a redelivered task updates, never
duplicates. Enqueueing always happens after the commit; :func:`reconcile` repairs what a
crash between the two lost.
"""

import logging
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Update, bindparam, exists, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, joinedload

from forensics import ForensicsError
from forensics.finding import Finding, Status
from forensics.fusion import fuse
from forensics.methods import REGISTRY
from forensics.methods.metadata import extract_metadata
from forensics.methods.metadata import extraction as metadata_extraction
from forensics.options import AnalysisOptions, Sensitivity
from forensics.pipeline import file_info
from forensics.render import encode_jpeg, gray_png, overlay_jpeg
from service import duplicates, ingest, metrics, netguard
from service.cases import Intake
from service.db import session_scope
from service.decoded import decoded as decoded_image
from service.decoded import release
from service.dispatch import heartbeat, send_case_pdf, send_fuses, send_methods, send_prepares
from service.heatmaps import load_heatmap, store_heatmap
from service.methods import selected_methods
from service.models import (
    FINDING_DONE,
    IMAGE_DONE,
    Case,
    CaseStatus,
    FindingRow,
    FindingStatus,
    Image,
    ImageStatus,
    utcnow,
)
from service.renditions import store_display
from service.settings import get_settings
from service.storage import ObjectNotFound, Storage, get_storage, image_prefix, original_key
from service.webhooks import outbox

logger = logging.getLogger(__name__)


def _insert_ignore(session: Session, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: creating the findings twice keeps one row per (image, method)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(FindingRow).values(rows).on_conflict_do_nothing(index_elements=["image_id", "method"]))


def _update(entity: type[Image] | type[Case] | type[FindingRow]) -> Update:
    """A conditional UPDATE that leaves objects loaded in the session alone. Every function here
    re-reads the state it decides on, so the ORM's default synchronisation (evaluating the WHERE
    clause against loaded objects in Python, or fetching the matched rows back) is pure cost: a
    few tenths of a millisecond a statement, about thirty statements an image."""
    return update(entity).execution_options(synchronize_session=False)


#: The heartbeat of an image's prepare or fuse task (the reconciler reads ``updated_at``).
_IMAGE_BEAT = (
    _update(Image)
    .where(Image.id == bindparam("image_id"), Image.status == bindparam("status"))
    .values(updated_at=bindparam("now"))
)


# ---------------------------------------------------------------------------------------- prepare


def prepare_image(image_id: uuid.UUID) -> None:
    """Fetch, validate and decode one image; create its findings; enqueue one task per method.

    A delivery that finds the image already prepared sends the findings still unsent: the
    message comes back when the process that prepared it died between its commit and its
    publish (``task_reject_on_worker_lost``), and those would otherwise wait a lease for the
    reconciler. A copy sent twice is refused by the findings' claims."""
    with session_scope() as session:
        image = session.get(Image, image_id)
        if image is None or image.status not in (ImageStatus.QUEUED, ImageStatus.RUNNING):
            return
        if image.status == ImageStatus.RUNNING:
            pending = list(
                session.scalars(
                    select(FindingRow.method).where(
                        FindingRow.image_id == image_id, FindingRow.status == FindingStatus.PENDING, FindingRow.enqueued_at.is_(None)
                    )
                )
            )
        else:
            image.attempts += 1
            image.started_at = image.started_at or utcnow()
            session.commit()
            with heartbeat(_IMAGE_BEAT, {"image_id": image_id, "status": ImageStatus.QUEUED.value}):
                pending = _prepare(session, image)
    send_methods((image_id, name) for name in pending)


def _prepare(session: Session, image: Image) -> list[str]:
    """The prepare step proper: the methods left to send (none when the image failed or another delivery won)."""
    image_id = image.id
    settings = get_settings()
    if image.storage_key is None and image.source_url is not None and not _fetch_source(session, image):
        return []
    try:
        decoded = decoded_image(image)
    except (ForensicsError, ObjectNotFound) as exc:
        code = exc.code if isinstance(exc, ForensicsError) else "ANALYSIS_ERROR"
        detail = str(exc) if isinstance(exc, ForensicsError) else "The stored original is missing."
        fail_image(session, image_id, code, detail)
        complete_case_if_done(session, image.case_id)
        return []
    methods = selected_methods(settings)
    now = utcnow()
    _insert_ignore(
        session,
        [
            {"id": uuid.uuid4(), "image_id": image_id, "method": m.name, "position": i, "enqueued_at": None}
            for i, m in enumerate(methods)
        ],
    )
    won = session.execute(
        _update(Image)
        .where(Image.id == image_id, Image.status == ImageStatus.QUEUED)
        .values(
            status=ImageStatus.RUNNING,
            format=decoded.format.value,
            width=decoded.width,
            height=decoded.height,
            file_info=file_info(decoded),
            updated_at=now,
        )
    ).rowcount
    if won:
        _record_hash(session, image, decoded.luma)
    session.execute(
        _update(Case).where(Case.id == image.case_id, Case.status == CaseStatus.QUEUED).values(status=CaseStatus.RUNNING)
    )
    session.commit()
    if not won:
        return []
    return list(
        session.scalars(
            select(FindingRow.method).where(FindingRow.image_id == image_id, FindingRow.status.not_in(FINDING_DONE))
        ).all()
    )


def _record_hash(session: Session, image: Image, luma: Any) -> None:
    """Store the image's perceptual hash for near-duplicate search; a failure is logged, never fails the image."""
    try:
        with session.begin_nested():
            duplicates.record(session, image, luma)
    except Exception:  # noqa: BLE001 - near-duplicate search is secondary to the analysis
        logger.warning("could not store the perceptual hash of image %s", image.id, exc_info=True)


def _fetch_source(session: Session, image: Image) -> bool:
    """Fetch an image given by URL (SSRF rules checked again, size and time limits), store it and
    record its hash; False when it failed (the image is failed, the case closed if it was the last)."""
    settings = get_settings()
    assert image.source_url is not None
    folder = Path(tempfile.mkdtemp(prefix="forensics-fetch-"))
    try:
        try:
            target = netguard.check_url(image.source_url, settings.webhook_allowlist)
        except netguard.UnsafeURL as exc:
            intake = Intake(image.filename, None, 0, None, error_code="UNSAFE_URL", error_detail=f"{image.source_url}: {exc}")
        else:
            intake = ingest.fetch_one(target, folder / "original", settings, name=image.filename)
        if intake.error_code is not None or intake.path is None or intake.sha256 is None or intake.format is None:
            fail_image(session, image.id, intake.error_code or "FETCH_FAILED", intake.error_detail or "")
            complete_case_if_done(session, image.case_id)
            return False
        key = original_key(image.case_id, intake.sha256)
        get_storage().put_file(key, intake.path, intake.format.mime_type)
        image.sha256, image.size_bytes, image.storage_key, image.format = intake.sha256, intake.size, key, intake.format.value
        session.commit()
        return True
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fail_image(session: Session, image_id: uuid.UUID, code: str, detail: str) -> None:
    won = session.execute(
        _update(Image)
        .where(Image.id == image_id, Image.status.not_in(IMAGE_DONE))
        .values(status=ImageStatus.FAILED, error_code=code, error_detail=detail, completed_at=utcnow())
    ).rowcount
    events = outbox.add_image_event(session, image_id) if won else []
    session.commit()
    outbox.enqueue(events)


# ---------------------------------------------------------------------------------------- methods

# A method task's four statements, built once with bound parameters: building a statement and
# its cache key at every call cost about as much CPU again as executing it (0.6 ms against 0.3
# ms a statement, measured on the ORM update of a finding), and every method task runs four.
_FINDING = (
    select(FindingRow)
    .options(joinedload(FindingRow.image).joinedload(Image.case))  # the case's sensitivity, in the same statement
    .where(FindingRow.image_id == bindparam("image_id"), FindingRow.method == bindparam("method"))
)
# A claim takes a pending finding, or a running one whose task stopped beating (its process died).
_CLAIM = (
    _update(FindingRow)
    .where(
        FindingRow.id == bindparam("finding_id"),
        (FindingRow.status == FindingStatus.PENDING)
        | ((FindingRow.status == FindingStatus.RUNNING) & (FindingRow.alive_at < bindparam("stale"))),
    )
    .values(
        status=FindingStatus.RUNNING, started_at=bindparam("now"), alive_at=bindparam("now"),
        attempts=FindingRow.attempts + 1, claimed_by=bindparam("claimant"),
    )
)
_FINDING_BEAT = (
    _update(FindingRow)
    .where(FindingRow.id == bindparam("finding_id"), FindingRow.status == FindingStatus.RUNNING)
    .values(alive_at=bindparam("now"))
)
# A failed task gives its finding back as unsent: the reconciler's next pass sends it again.
_RELEASE = (
    _update(FindingRow)
    .where(FindingRow.id == bindparam("finding_id"), FindingRow.status == FindingStatus.RUNNING)
    .values(status=FindingStatus.PENDING, enqueued_at=None)
)
_GIVE_BACK = (
    _update(FindingRow)
    .where(
        FindingRow.image_id == bindparam("lost_image"), FindingRow.method == bindparam("lost_method"),
        FindingRow.status == FindingStatus.RUNNING, FindingRow.claimed_by == bindparam("claimant"),
        FindingRow.attempts < bindparam("max_attempts"),
    )
    .values(status=FindingStatus.PENDING)
)
_RECORDED = ("status", "method_version", "score", "label", "summary", "details", "heatmap_key", "view_keys", "seconds", "finished_at")
_RECORD = (
    _update(FindingRow)
    .where(FindingRow.id == bindparam("finding_id"), FindingRow.status.not_in(FINDING_DONE))
    .values({name: bindparam(f"new_{name}") for name in _RECORDED})
)
_JOIN = (
    _update(Image)
    .where(
        Image.id == bindparam("image_id"),
        Image.status == ImageStatus.RUNNING,
        ~exists().where(FindingRow.image_id == bindparam("image_id"), FindingRow.status.not_in(FINDING_DONE)),
    )
    .values(status=ImageStatus.FUSING, updated_at=bindparam("now"))
)


def run_method(image_id: uuid.UUID, method_name: str, claimant: str | None = None) -> None:
    """Run one method on one image and store its finding; the last finisher enqueues the join.

    ``claimant`` names this delivery (task id and pool process) in the claim, so that the worker can
    give the claim back if the process running it dies (:func:`give_back_lost_claim`).
    Every transaction here is one statement (the claim, the finding, the join), so the session
    autocommits: five round trips to the database a task instead of eleven."""
    storage = get_storage()
    with session_scope(autocommit=True) as session:
        row = session.scalar(_FINDING, {"image_id": image_id, "method": method_name})
        if row is None:
            return
        if row.status not in FINDING_DONE:
            now = utcnow()
            stale = now - timedelta(seconds=get_settings().lease_seconds)
            claimed = session.execute(_CLAIM, {"finding_id": row.id, "now": now, "stale": stale, "claimant": claimant}).rowcount
            session.commit()  # no transaction stays open ("idle in transaction") while the method runs
            if not claimed:
                return  # done, or running elsewhere: that delivery joins
            try:
                with heartbeat(_FINDING_BEAT, {"finding_id": row.id}):
                    start = time.perf_counter()
                    finding = _examine(row.image, method_name)
                    examined = time.perf_counter()
                    _store_finding(session, storage, row, finding)
            except BaseException:
                _release(session, row.id)
                raise
            logger.info(
                "%s of image %s: method %.3f s, decode and overhead %.3f s, storing %.3f s",
                method_name, image_id, finding.seconds, examined - start - finding.seconds, time.perf_counter() - examined,
            )
            metrics.METHOD_SECONDS.labels(method_name, finding.status.value).observe(finding.seconds)
        won = try_join(session, image_id)
    if won:
        send_fuses([image_id])


def give_back_lost_claim(image_id: uuid.UUID, method_name: str, claimant: str) -> bool:
    """Make a finding claimable again at once when the pool process running it died (killed, out
    of memory) and its message goes back to the queue, rather than after its lease: the worker's
    main process calls this before it requeues the message. Only ``claimant``'s own claim is given
    back, never one another delivery holds; and not after ``FORENSICS_MAX_ATTEMPTS`` deliveries,
    so that a method that kills its process every time ends as an error (the reconciler records it
    once the lease has passed) instead of looping. True when the claim was given back."""
    with session_scope(autocommit=True) as session:
        given = session.execute(
            _GIVE_BACK, {"lost_image": image_id, "lost_method": method_name, "claimant": claimant, "max_attempts": get_settings().max_attempts}
        ).rowcount
    if given:
        metrics.LOST_CLAIMS.labels(method_name).inc()
    return bool(given)


def _release(session: Session, finding_id: uuid.UUID) -> None:
    """Give a claimed finding back (its task failed and will be retried); best effort: with the
    database unreachable the lease runs out instead."""
    try:
        session.execute(_RELEASE, {"finding_id": finding_id})
        session.commit()
    except Exception:  # noqa: BLE001
        logger.warning("could not release finding %s; it is run again after its lease", finding_id, exc_info=True)


def _examine(image: Image, method_name: str) -> Finding:
    method = REGISTRY.get(method_name)
    if method is None:
        return Finding(method_name, "?", Status.ERROR, None, "error", "This worker does not know the method.")
    try:
        decoded = decoded_image(image)
    except ForensicsError as exc:
        return method.error(f"The image could not be decoded: {exc}")
    return method.run(decoded, AnalysisOptions(Sensitivity(image.case.sensitivity)))


def _store_finding(session: Session, storage: Storage, row: FindingRow, finding: Finding) -> None:
    prefix = image_prefix(row.image.case_id, row.image_id)
    heatmap_key = None
    if finding.heatmap is not None:
        heatmap_key = f"{prefix}/heatmaps/{row.method}.png"
        store_heatmap(storage, heatmap_key, finding.heatmap)
    view_keys = {}
    for view, pixels in finding.views.items():
        view_keys[view] = f"{prefix}/views/{row.method}_{view}.jpg"
        storage.put_bytes(view_keys[view], encode_jpeg(pixels), "image/jpeg")
    record_finding(session, row.id, finding, heatmap_key=heatmap_key, view_keys=view_keys)


def record_finding(
    session: Session,
    finding_id: uuid.UUID,
    finding: Finding,
    *,
    heatmap_key: str | None = None,
    view_keys: dict[str, str] | None = None,
) -> None:
    """Store ``finding`` unless the row is already done (a redelivered task changes nothing)."""
    values = {
        "status": finding.status.value,
        "method_version": finding.version,
        "score": finding.score,
        "label": finding.label,
        "summary": finding.summary,
        "details": _jsonable(dict(finding.details)),
        "heatmap_key": heatmap_key,
        "view_keys": view_keys or {},
        "seconds": finding.seconds,
        "finished_at": utcnow(),
    }
    session.execute(_RECORD, {"finding_id": finding_id} | {f"new_{name}": value for name, value in values.items()})
    session.commit()


def record_method_error(image_id: uuid.UUID, method_name: str, summary: str) -> None:
    """Record an error finding (time limit reached, retries exhausted) and try the join."""
    with session_scope(autocommit=True) as session:
        row = session.scalar(select(FindingRow).where(FindingRow.image_id == image_id, FindingRow.method == method_name))
        if row is None:
            return
        method = REGISTRY.get(method_name)
        version = method.version if method else "?"
        record_finding(session, row.id, Finding(method_name, version, Status.ERROR, None, "error", summary))
        won = try_join(session, image_id)
    if won:
        send_fuses([image_id])


def _jsonable(value: Any) -> Any:
    """Details are JSON-serialisable by contract; numpy scalars that slip through become floats."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def try_join(session: Session, image_id: uuid.UUID) -> bool:
    """``running -> fusing`` when no finding is left; exactly one caller gets True.

    Called after the caller's finding is committed, in its own statement: the last finding
    to commit always sees every other one done, and the row lock of the conditional update
    lets only one of concurrent finishers change the status.
    """
    won = session.execute(_JOIN, {"image_id": image_id, "now": utcnow()}).rowcount
    session.commit()
    return won == 1


# ---------------------------------------------------------------------------------------- join


def fuse_image(image_id: uuid.UUID) -> None:
    """Fuse the stored findings into the image's result, then complete the case if it was the last."""
    with session_scope() as session:
        image = session.get(Image, image_id)
        if image is None or image.status != ImageStatus.FUSING:
            return
        image.fuse_attempts += 1  # counted before the work: a join that kills its process counts too
        session.commit()
        with heartbeat(_IMAGE_BEAT, {"image_id": image_id, "status": ImageStatus.FUSING.value}):
            _fuse(session, image)


def _fuse(session: Session, image: Image) -> None:
    """Fuse, store the maps, complete the image (once) and its case if it was the last."""
    image_id = image.id
    storage = get_storage()
    assert image.width is not None and image.height is not None
    findings = [_as_finding(row, storage) for row in image.findings]
    fused = fuse(findings, (image.height, image.width))
    metadata = _metadata_section(image, findings)
    heatmap_key = overlay_key = None
    if fused.heatmap is not None:
        prefix = image_prefix(image.case_id, image_id)
        heatmap_key, overlay_key = f"{prefix}/fused.png", f"{prefix}/overlay.jpg"
        storage.put_bytes(heatmap_key, gray_png(fused.heatmap), "image/png")
        storage.put_bytes(overlay_key, overlay_jpeg(decoded_image(image).rgb, fused.heatmap), "image/jpeg")
    store_display(storage, image, decoded_image(image).rgb)
    now = utcnow()
    started = image.started_at or now
    won = session.execute(
        _update(Image)
        .where(Image.id == image_id, Image.status == ImageStatus.FUSING)
        .values(
            status=ImageStatus.COMPLETED,
            tamper_score=fused.score,
            verdict=fused.verdict,
            fused=fused.to_dict(),
            heatmap_key=heatmap_key,
            overlay_key=overlay_key,
            image_metadata=metadata,
            completed_at=now,
            seconds=(now - started).total_seconds(),
        )
    ).rowcount
    events = outbox.add_image_event(session, image_id) if won else []
    session.commit()
    release(image)
    outbox.enqueue(events)
    complete_case_if_done(session, image.case_id)


def _metadata_section(image: Image, findings: list[Finding]) -> dict[str, Any]:
    """The report's metadata section: the metadata method's extraction, so that the file's
    metadata is read once per image; read here only when that method was not selected or failed."""
    for finding in findings:
        found = metadata_extraction(finding)
        if found is not None:
            return found
    try:
        return _jsonable(extract_metadata(decoded_image(image)))
    except Exception as exc:  # metadata is a report section; its failure must not fail the image
        logger.exception("metadata extraction failed for image %s", image.id)
        return {"error": f"{type(exc).__name__}: {exc}"}




def _as_finding(row: FindingRow, storage: Storage) -> Finding:
    heatmap = None
    if row.heatmap_key:
        try:
            heatmap = load_heatmap(storage, row.heatmap_key)
        except ObjectNotFound:  # fuse without the lost map rather than retry the join forever
            logger.warning("heatmap %s is missing; fusing %s without it", row.heatmap_key, row.method)
    return Finding(
        method=row.method,
        version=row.method_version or "?",
        status=Status(row.status),
        score=row.score,
        label=row.label or "",
        summary=row.summary or "",
        details=row.details or {},
        heatmap=heatmap,
        seconds=row.seconds or 0.0,
    )


def complete_case_if_done(session: Session, case_id: uuid.UUID) -> bool:
    """Close the case when no image is left: ``completed`` if any image completed, else ``failed``.

    Exactly one finisher gets True, and writes the webhook outbox rows in the same transaction; it
    then asks a worker for the case's PDF (:mod:`service.case_pdf`).
    """
    unfinished = exists().where(Image.case_id == case_id, Image.status.not_in(IMAGE_DONE))
    any_completed = exists().where(Image.case_id == case_id, Image.status == ImageStatus.COMPLETED)
    won = session.execute(
        _update(Case)
        .where(Case.id == case_id, Case.status.in_([CaseStatus.QUEUED, CaseStatus.RUNNING]), ~unfinished)
        .values(
            status=sql_case((any_completed, CaseStatus.COMPLETED.value), else_=CaseStatus.FAILED.value),
            completed_at=utcnow(),
        )
    ).rowcount
    events = outbox.add_case_event(session, case_id) if won else []
    session.commit()
    outbox.enqueue(events)
    if won:
        send_case_pdf(case_id)
    return won == 1


# ---------------------------------------------------------------------------------------- reconciler


#: How far after a worker saw its broker connection fail a message's publish may still be stamped.
BROKER_LOSS_MARGIN = timedelta(seconds=2)


@dataclass
class Repairs:
    """What one reconciler pass did (logged, and asserted by tests)."""

    requeued_methods: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    timed_out_methods: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    requeued_prepares: list[uuid.UUID] = field(default_factory=list)
    failed_prepares: list[uuid.UUID] = field(default_factory=list)
    requeued_fuses: list[uuid.UUID] = field(default_factory=list)
    failed_fuses: list[uuid.UUID] = field(default_factory=list)
    closed_cases: list[uuid.UUID] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(bool(v) for v in vars(self).values())


def reconcile(now: datetime | None = None, *, workers_gone: bool = False, broker_lost_at: datetime | None = None) -> Repairs:
    """Repair lost work; safe to run anywhere, any time.

    Work is lost when its process died (its heartbeat is older than the lease), when its
    message was never published (``enqueued_at`` still unset a lease after its row was written:
    the publish failed, or the process died between the commit and the publish; see
    :mod:`service.dispatch`), or when its message vanished with the broker (queued for
    ``FORENSICS_REQUEUE_AFTER``).

    ``workers_gone`` says that no worker runs and that messages taken by the last ones may have
    died with them (``forensics serve`` starting after its worker had to be killed: the
    filesystem transport keeps a taken message only in the worker's memory until it is
    acknowledged). Then everything in flight before ``now`` is lost, and is sent again at once; a
    copy of a message that did survive is refused by the claims.

    ``broker_lost_at`` says that a worker lost its broker connection at that time (sent by
    :mod:`worker.broker_loss` once it is back). A message in flight at that moment can be gone:
    Redis hands it out with ``BRPOP`` and kombu records it as unacknowledged only in a second
    command, so a reply lost to the cut loses the message; and a Redis that restarted without
    its data lost every message. Work published before then and still waiting is sent again
    now; whatever survived is refused by the claims. Rows an earlier pass stamped after that
    time are left alone, so that the workers that all report one outage do not each send the
    queue again. ``BROKER_LOSS_MARGIN`` covers a stamp trailing its publish and clocks that
    differ slightly between machines."""
    settings = get_settings()
    now = now or utcnow()
    stale = now if workers_gone else now - timedelta(seconds=settings.lease_seconds)
    lost_cutoff = now if workers_gone else now - timedelta(seconds=settings.requeue_after)
    if broker_lost_at is not None:
        lost_cutoff = max(lost_cutoff, min(now, broker_lost_at + BROKER_LOSS_MARGIN))
    repairs = Repairs()
    with session_scope() as session:
        # Methods whose process died: run again, or record an error after max_attempts.
        stuck = session.execute(
            select(FindingRow.id, FindingRow.image_id, FindingRow.method, FindingRow.attempts).where(
                FindingRow.status == FindingStatus.RUNNING, FindingRow.alive_at < stale
            )
        ).all()
        for finding_id, image_id, method, attempts in stuck:
            if attempts >= settings.max_attempts:
                repairs.timed_out_methods.append((image_id, method))
            elif session.execute(
                _update(FindingRow)
                .where(FindingRow.id == finding_id, FindingRow.status == FindingStatus.RUNNING, FindingRow.alive_at < stale)
                .values(status=FindingStatus.PENDING, enqueued_at=now)
            ).rowcount:
                repairs.requeued_methods.append((image_id, method))
        # Methods whose message was never published, or was lost.
        lost = session.execute(
            select(FindingRow.id, FindingRow.image_id, FindingRow.method)
            .join(Image)
            .where(
                Image.status == ImageStatus.RUNNING,
                FindingRow.status == FindingStatus.PENDING,
                (FindingRow.enqueued_at.is_(None) & (Image.updated_at < stale)) | (FindingRow.enqueued_at < lost_cutoff),
            )
        ).all()
        for finding_id, image_id, method in lost:
            session.execute(_update(FindingRow).where(FindingRow.id == finding_id).values(enqueued_at=now))
            repairs.requeued_methods.append((image_id, method))
        # Images not prepared: the message was never published or was lost, or prepare died.
        for image_id, attempts in session.execute(
            select(Image.id, Image.attempts).where(
                Image.status == ImageStatus.QUEUED,
                (
                    (Image.attempts == 0)
                    & ((Image.enqueued_at.is_(None) & (Image.created_at < stale)) | (Image.enqueued_at < lost_cutoff))
                )
                | ((Image.attempts > 0) & (Image.updated_at < stale)),
            )
        ).all():
            if attempts >= settings.max_attempts:
                repairs.failed_prepares.append(image_id)
            else:
                session.execute(_update(Image).where(Image.id == image_id).values(enqueued_at=now, updated_at=now))
                repairs.requeued_prepares.append(image_id)
        # Joins whose fuse message was lost or whose fuse task died or failed: sent again, or the
        # image failed once max_attempts joins have not finished.
        for image_id, fuse_attempts in session.execute(
            select(Image.id, Image.fuse_attempts).where(Image.status == ImageStatus.FUSING, Image.updated_at < stale)
        ).all():
            if fuse_attempts >= settings.max_attempts:
                repairs.failed_fuses.append(image_id)
            else:
                session.execute(_update(Image).where(Image.id == image_id).values(updated_at=now))
                repairs.requeued_fuses.append(image_id)
        session.commit()
        # Images whose last finding was recorded by a task that died before its join.
        unjoined = session.scalars(
            select(Image.id).where(
                Image.status == ImageStatus.RUNNING,
                Image.updated_at < stale,
                ~exists().where(FindingRow.image_id == Image.id, FindingRow.status.not_in(FINDING_DONE)),
            )
        ).all()
        repairs.requeued_fuses.extend(i for i in unjoined if try_join(session, i))
        for image_id in repairs.failed_prepares:
            fail_image(session, image_id, "ANALYSIS_ERROR", "The image could not be prepared for analysis.")
        for image_id in repairs.failed_fuses:
            fail_image(session, image_id, "ANALYSIS_ERROR", f"The findings could not be fused ({settings.max_attempts} attempts).")
        open_cases = session.scalars(
            select(Case.id).where(
                Case.status.in_([CaseStatus.QUEUED, CaseStatus.RUNNING]),
                ~exists().where(Image.case_id == Case.id, Image.status.not_in(IMAGE_DONE)),
            )
        ).all()
        repairs.closed_cases.extend(c for c in open_cases if complete_case_if_done(session, c))
    for image_id, method in repairs.timed_out_methods:
        record_method_error(
            image_id, method, f"The method's process stopped (killed, out of memory or timed out) {settings.max_attempts} times."
        )
    send_methods(repairs.requeued_methods)
    send_prepares(repairs.requeued_prepares)
    send_fuses(repairs.requeued_fuses)
    if repairs:
        logger.warning("reconciler repaired lost work: %s", repairs)
    for kind, work in vars(repairs).items():  # every kind, zeros included: each series exists from the first pass
        metrics.RECONCILER_REPAIRS.labels(kind).inc(len(work))
    return repairs
