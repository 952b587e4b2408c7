"""Creating a case from one request, the whole flow, without HTTP.

The API parses the request (multipart files judged by their first bytes, ZIP archives,
direct-upload slots, image URLs) into a :class:`CaseRequest`; :func:`create_case` then

1. reserves the ``Idempotency-Key``; a key used before with the same payload gives back the
   response stored for it, with another payload :class:`~service.idempotency.Mismatch`;
2. checks what the request names: how many files and URLs, the callback and image URLs
   against the SSRF rules; expands the archives; claims the upload slots;
3. takes the accepted images from the tenant's daily quota;
4. stores the originals and creates the case (:func:`service.cases.create_case`);
5. deletes the claimed slots' objects, publishes the prepare tasks after the commit
   (:func:`service.dispatch.send_prepares`) and stores the response for the key.

Whatever fails before the case exists releases the claimed slots, and any failure releases
the key, so the client may simply retry. Refusals are :class:`~service.errors.Refused`.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from forensics.options import Sensitivity
from service import anomalies, cases, correlation, dispatch, idempotency, ingest, netguard, ratelimit
from service.cases import Intake
from service.errors import Refused
from service.models import Case
from service.settings import Settings
from service.storage import Storage
from service.tenants import Principal
from service.webhooks.endpoints import check_destination

#: The route the keys of case creations are reserved for.
ROUTE = "POST /v1/cases"


@dataclass(frozen=True)
class Archive:
    """A ZIP archive received with the request; its entries are expanded beside it."""

    filename: str
    path: Path
    too_large: bool = False


@dataclass(frozen=True)
class CaseRequest:
    """What one creation request asks for, as the API received it.

    ``fingerprint`` identifies the payload for the ``Idempotency-Key``; ``files`` are the
    files received, already judged by their first bytes (refused ones carry their reason).
    """

    fingerprint: str
    label: str | None = None
    callback_url: str | None = None
    sensitivity: Sensitivity = Sensitivity.DEFAULT
    files: tuple[Intake, ...] = ()
    archives: tuple[Archive, ...] = ()
    upload_ids: tuple[uuid.UUID, ...] = ()
    urls: tuple[str, ...] = ()
    #: The case's own anomaly limits (service.anomalies.LIMITS keys), over the tenant's defaults.
    anomaly_limits: dict[str, float] | None = None


@dataclass(frozen=True)
class Answer:
    """The response to a creation request: the caller's rendering of the new case, or the
    one stored for the request's key (``replayed``)."""

    status: int
    body: str
    headers: dict[str, str]
    replayed: bool = False


def refusal(intake: Intake) -> Refused:
    """The refusal of a request none of whose files was accepted: the first file's reason."""
    assert intake.error_code is not None
    return Refused(intake.error_code, f"{intake.filename or '(no name)'}: {intake.error_detail}")


def create_case(
    session: Session,
    storage: Storage,
    settings: Settings,
    principal: Principal,
    request: CaseRequest,
    *,
    key: str | None,
    render: Callable[[Case], Answer],
) -> Answer:
    """Create the case ``request`` asks for and publish its work; ``render`` makes the response stored for ``key``.

    Blocking (DNS, storage, database): call it in a thread. Raises :class:`Refused`, or
    :class:`~service.idempotency.InFlight` / :class:`~service.idempotency.Mismatch` for the key.
    """
    tenant_id = principal.tenant_id
    if key is not None:
        stored = idempotency.begin(tenant_id, key, ROUTE)
        if stored is not None:
            idempotency.check_payload(stored, request.fingerprint)
            return Answer(stored.status, stored.body, stored.headers, replayed=True)
    try:
        intakes, stored_keys, claimed = _gather(session, storage, settings, tenant_id, request)
        try:
            if all(i.error_code for i in intakes):
                raise refusal(intakes[0])
            _take_quota(settings, principal, sum(1 for i in intakes if i.error_code is None))
            case, queued = cases.create_case(
                session,
                storage,
                tenant_id=tenant_id,
                label=request.label,
                callback_url=request.callback_url,
                sensitivity=request.sensitivity,
                anomaly_limits=anomalies.resolve_limits(settings, principal.anomaly_limits, request.anomaly_limits),
                intakes=intakes,
                stored=stored_keys,
            )
        except BaseException:
            ingest.release_uploads(session, claimed)
            raise
        if claimed:
            ingest.delete_uploaded(storage, session, claimed)
        token = correlation.bind(case_id=case.id)  # the prepare messages carry it
        try:
            dispatch.send_prepares(queued)
        finally:
            correlation.reset(token)  # a caller's thread keeps no case of ours in its context
        answer = render(case)
        if key is not None:
            idempotency.finish(tenant_id, key, request.fingerprint, answer.status, answer.body, answer.headers)
        return answer
    except BaseException:
        if key is not None:
            idempotency.release(tenant_id, key)
        raise


def _gather(
    session: Session, storage: Storage, settings: Settings, tenant_id: uuid.UUID, request: CaseRequest
) -> tuple[list[Intake], dict[str, str], list[uuid.UUID]]:
    """Check what the request names and collect its intakes, claiming the upload slots last.

    Returns the intakes in the request's order (files, archives' entries, upload slots, URLs),
    SHA-256 -> storage key of the slots' objects, and the slots claimed."""
    if not (request.files or request.archives or request.upload_ids or request.urls):
        raise Refused("NO_FILE", 'no image named: send files in "images" or ZIP archives in "archive", or JSON with upload_ids or urls')
    if len(request.urls) > settings.max_urls_per_case:
        raise Refused("TOO_MANY_FILES", f"more than {settings.max_urls_per_case} URLs in one case")
    intakes = list(request.files)
    for archive in request.archives:
        if archive.too_large:
            raise Refused("FILE_TOO_LARGE", f"the archive is larger than {settings.max_file_bytes:,} bytes")
        try:
            intakes += ingest.expand_zip(archive.path, archive.path.parent, settings)
        except ingest.ArchiveError as exc:
            raise Refused(exc.code, f"{archive.filename or 'archive'}: {exc}") from None
    if len(intakes) + len(request.upload_ids) + len(request.urls) > settings.max_files_per_case:
        raise Refused("TOO_MANY_FILES", f"more than {settings.max_files_per_case} files in one case")
    if request.callback_url:
        try:
            check_destination(request.callback_url)
        except netguard.UnsafeURL as exc:
            raise Refused("UNSAFE_URL", f"callback_url: {exc}") from None
    try:
        targets = ingest.check_urls(list(request.urls), settings)
    except netguard.UnsafeURL as exc:
        raise Refused("UNSAFE_URL", str(exc)) from None
    stored: dict[str, str] = {}
    claimed: list[uuid.UUID] = []
    if request.upload_ids:
        try:
            slots, stored, claimed = ingest.claim_uploads(session, storage, tenant_id, list(request.upload_ids), settings)
        except ingest.ArchiveError as exc:
            raise Refused(exc.code, str(exc), status=409) from None
        intakes += slots
    return intakes + ingest.url_intakes(targets), stored, claimed


def _take_quota(settings: Settings, principal: Principal, accepted: int) -> None:
    limit = settings.image_quota_per_day if principal.images_per_day is None else principal.images_per_day
    decision = ratelimit.take_images(principal.tenant_id, accepted, limit)
    if not decision.allowed:
        raise Refused(
            "QUOTA_EXCEEDED",
            f"{accepted} images exceed the day's quota of {limit} (left: {decision.remaining})",
            retry_after=decision.reset,
        )
