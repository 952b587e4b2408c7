"""Cases: create from a batch upload, list, poll, read image reports, download the dossier."""

import mimetypes
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, BinaryIO
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from api.deps import LinkDep, PrincipalDep, ReadSessionDep, SessionDep, SettingsDep, StorageDep
from api.idempotency import Idempotent
from api.problems import Problem
from api.schemas import CaseFromSources, CaseList, CaseListItem, CasePublic, ImageError, ImageReport, ImageSummary, Progress
from api.status_cache import make_body, status_bodies
from api.uploads import UploadForm, read_multipart, refuse, to_intake
from forensics.formats import ImageFormat
from service import cases, correlation, dispatch, idempotency, ingest, names, netguard, ratelimit, reports
from service.cases import Intake
from service.models import Case, CaseStatus
from service.settings import Settings
from service.storage import Storage
from service.tenants import Principal
from service.webhooks import endpoints

router = APIRouter(prefix="/v1/cases", tags=["cases"])

CREATE_CASE = {
    "parameters": [
        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255}}
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1},
                        "archive": {"type": "string", "format": "binary", "description": "a ZIP of images"},
                        "label": {"type": "string", "maxLength": 200, "pattern": names.TEXT_PATTERN},
                        "callback_url": {"type": "string", "format": "uri", "maxLength": 2000},
                    },
                    "anyOf": [{"required": ["images"]}, {"required": ["archive"]}],
                }
            },
            "application/json": {"schema": CaseFromSources.model_json_schema()},
        },
    },
}
MAX_JSON_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = "2"


def _case_public(request: Request, case: Case) -> CasePublic:
    return CasePublic(
        id=case.id,
        label=case.label,
        status=case.status,
        created_at=case.created_at,
        completed_at=case.completed_at,
        progress=Progress(**cases.progress(case)),
        images=[
            ImageSummary(
                id=i.id,
                position=i.position,
                filename=i.filename,
                status=i.status,
                sha256=i.sha256,
                tamper_score=None if i.tamper_score is None else round(i.tamper_score, 1),
                verdict=i.verdict,
                error=ImageError(code=i.error_code, detail=i.error_detail) if i.error_code else None,
                url=str(request.url_for("get_image_report", case_id=case.id, image_id=i.id)),
            )
            for i in case.images
        ],
        report_url=str(request.url_for("get_report_zip", case_id=case.id)),
    )


def _text_field(value: str | None, name: str, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > limit:
        raise Problem("BAD_REQUEST", f"{name} is longer than {limit} characters")
    if found := names.unsafe_characters(value):
        raise Problem("BAD_REQUEST", f"{name} contains characters that are not allowed: {', '.join(found)}")
    return value.strip()


def _check_callback(callback_url: str | None) -> None:
    """SSRF rules at registration (resolves the name: call in a thread)."""
    if callback_url:
        try:
            endpoints.check_destination(callback_url)
        except netguard.UnsafeURL as exc:
            raise Problem("UNSAFE_URL", f"callback_url: {exc}") from None


@dataclass
class _Sources:
    """What a creation request brings: the intakes and where their bytes are."""

    intakes: list[Intake] = field(default_factory=list)
    stored: dict[str, str] = field(default_factory=dict)
    claimed: list[UUID] = field(default_factory=list)
    label: str | None = None
    callback_url: str | None = None


async def _from_multipart(idem: Idempotent, settings: Settings, form: UploadForm) -> _Sources | Response:
    fingerprint = idempotency.fingerprint(
        {"fields": form.fields, "files": [(f.field, f.filename, f.size, None if f.too_large else f.sha256) for f in form.files]}
    )
    if (replay := idem.replay(fingerprint)) is not None:
        return replay
    files = [f for f in form.files if f.field == "images"]
    archives = [f for f in form.files if f.field == "archive"]
    if not files and not archives:
        raise Problem("NO_FILE", 'no file in the "images" (or "archive") field')
    sources = _Sources(
        label=_text_field(form.fields.get("label"), "label", 200),
        callback_url=_text_field(form.fields.get("callback_url"), "callback_url", 2000),
    )
    await run_in_threadpool(_check_callback, sources.callback_url)
    sources.intakes = [to_intake(f, settings.max_file_bytes) for f in files]
    for archive in archives:
        if archive.too_large:
            raise Problem("FILE_TOO_LARGE", f"the archive is larger than {settings.max_file_bytes:,} bytes")
        try:
            sources.intakes += await run_in_threadpool(ingest.expand_zip, archive.path, form.folder, settings)
        except ingest.ArchiveError as exc:
            raise Problem(exc.code, f"{archive.filename or 'archive'}: {exc}") from None
    if len(sources.intakes) > settings.max_files_per_case:
        raise Problem("TOO_MANY_FILES", f"more than {settings.max_files_per_case} files in one case")
    return sources


async def _from_json(
    request: Request, idem: Idempotent, principal: Principal, session: Session, storage: Storage, settings: Settings
) -> _Sources | Response:
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        raise Problem("FILE_TOO_LARGE", f"the JSON body is larger than {MAX_JSON_BYTES:,} bytes")
    try:
        body = CaseFromSources.model_validate_json(raw)
    except ValidationError as exc:
        raise Problem("BAD_REQUEST", "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    if (replay := idem.replay(idempotency.fingerprint(body.model_dump(mode="json")))) is not None:
        return replay
    if not body.upload_ids and not body.urls:
        raise Problem("NO_FILE", "name at least one of upload_ids or urls")
    if len(body.upload_ids) + len(body.urls) > settings.max_files_per_case:
        raise Problem("TOO_MANY_FILES", f"more than {settings.max_files_per_case} files in one case")
    if len(body.urls) > settings.max_urls_per_case:
        raise Problem("TOO_MANY_FILES", f"more than {settings.max_urls_per_case} URLs in one case")
    sources = _Sources(label=_text_field(body.label, "label", 200), callback_url=_text_field(body.callback_url, "callback_url", 2000))
    await run_in_threadpool(_check_callback, sources.callback_url)
    try:
        targets = await run_in_threadpool(ingest.check_urls, body.urls, settings)
    except netguard.UnsafeURL as exc:
        raise Problem("UNSAFE_URL", str(exc)) from None
    if body.upload_ids:
        try:
            sources.intakes, sources.stored, sources.claimed = await run_in_threadpool(
                ingest.claim_uploads, session, storage, principal.tenant_id, body.upload_ids, settings
            )
        except ingest.ArchiveError as exc:
            raise Problem(exc.code, str(exc), status=409) from None
    sources.intakes += ingest.url_intakes(targets)
    return sources


@router.post("", status_code=202, response_model=CasePublic, openapi_extra=CREATE_CASE)
async def create_case(
    request: Request, principal: PrincipalDep, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> Response:
    """Create a case and return it at once (analysis runs in the background). Multipart: files in `images`
    and/or ZIP archives in `archive`. JSON: `upload_ids` of direct uploads and/or image `urls`.
    Honours `Idempotency-Key`."""
    idem = await Idempotent.start(request, principal, "POST /v1/cases")
    form: UploadForm | None = None
    sources: _Sources | None = None
    try:
        if request.headers.get("content-type", "").lower().startswith("application/json"):
            result = await _from_json(request, idem, principal, session, storage, settings)
        else:
            form = await read_multipart(
                request,
                max_file_bytes=settings.max_file_bytes,
                max_request_bytes=settings.max_request_bytes,
                max_files=settings.max_files_per_case,
            )
            result = await _from_multipart(idem, settings, form)
        if isinstance(result, Response):
            return result
        sources = result
        if all(i.error_code for i in sources.intakes):
            raise refuse(sources.intakes[0])
        accepted = sum(1 for i in sources.intakes if i.error_code is None)
        limit = settings.image_quota_per_day if principal.images_per_day is None else principal.images_per_day
        decision = await run_in_threadpool(ratelimit.take_images, principal.tenant_id, accepted, limit)
        if not decision.allowed:
            raise Problem("QUOTA_EXCEEDED", f"{accepted} images exceed the day's quota of {limit} (left: {decision.remaining})",
                          headers={"Retry-After": str(decision.reset)})
        case, queued = await run_in_threadpool(
            cases.create_case,
            session,
            storage,
            tenant_id=principal.tenant_id,
            label=sources.label,
            callback_url=sources.callback_url,
            intakes=sources.intakes,
            stored=sources.stored,
        )
        correlation.bind(case_id=case.id)  # in this task, so the prepare messages sent from a thread carry it
    except BaseException:
        if sources is not None and sources.claimed:
            await run_in_threadpool(ingest.release_uploads, session, sources.claimed)
        await idem.close()
        raise
    finally:
        if form is not None:
            form.cleanup()
    try:
        if sources.claimed:
            await run_in_threadpool(ingest.delete_uploaded, storage, session, sources.claimed)
        await run_in_threadpool(dispatch.send_prepares, queued)
        body = _case_public(request, case)
        headers = {"Location": str(request.url_for("get_case", case_id=case.id)), "Retry-After": RETRY_AFTER_SECONDS}
        response = Response(body.model_dump_json(), status_code=202, media_type="application/json", headers=headers)
        return await idem.store(response, headers)
    finally:
        await idem.close()


@router.get("", response_model=CaseList)
def list_cases(
    request: Request,
    principal: PrincipalDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,200}$", description="next_cursor of the previous page")] = None,
) -> CaseList:
    """List cases, newest first, with cursor pagination."""
    try:
        page, next_cursor = cases.list_cases(session, principal.tenant_id, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise Problem("BAD_REQUEST", str(exc)) from None
    return CaseList(
        data=[
            CaseListItem(
                id=c.id,
                label=c.label,
                status=c.status,
                image_count=c.image_count,
                created_at=c.created_at,
                completed_at=c.completed_at,
                url=str(request.url_for("get_case", case_id=c.id)),
            )
            for c in page
        ],
        next_cursor=next_cursor,
    )


@router.get("/{case_id}", response_model=CasePublic, responses={304: {"description": "Not modified"}})
def get_case(
    request: Request,
    case_id: UUID,
    principal: PrincipalDep,
    session: ReadSessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Case status, progress and each image's status, score and verdict (ETag; Retry-After while running)."""
    fingerprint = cases.status_fingerprint(session, principal.tenant_id, case_id)
    base_url = str(request.base_url)
    status = status_bodies.get(case_id, base_url, fingerprint)
    if status is None:
        case = cases.get_case(session, principal.tenant_id, case_id)
        body = _case_public(request, case).model_dump_json().encode()
        status = make_body(fingerprint, body, running=case.status in (CaseStatus.QUEUED, CaseStatus.RUNNING))
        status_bodies.put(case_id, base_url, status)
    headers = {"ETag": status.etag, "Cache-Control": "no-cache"}
    if status.running:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    if if_none_match and status.etag in {t.strip().removeprefix("W/") for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(status.body, media_type="application/json", headers=headers)


@router.get("/{case_id}/images/{image_id}", response_model=ImageReport)
def get_image_report(
    case_id: UUID, image_id: UUID, principal: PrincipalDep, session: ReadSessionDep, link: LinkDep
) -> ImageReport:
    """The full report of one image: file, metadata, every finding, heatmap URLs, method versions, SHA-256."""
    image = cases.get_image(session, principal.tenant_id, case_id, image_id)
    return ImageReport.model_validate(reports.image_report(image, link))


@router.get("/{case_id}/report.zip", response_class=FileResponse)
def get_report_zip(case_id: UUID, principal: PrincipalDep, session: ReadSessionDep, storage: StorageDep) -> FileResponse:
    """The dossier: `batch_summary.json` and, per image, `forensic_report.json` with its heatmaps."""
    case = cases.get_case_with_findings(session, principal.tenant_id, case_id)
    spool = tempfile.NamedTemporaryFile(prefix="forensics-report-", suffix=".zip", delete=False)  # noqa: SIM115
    with spool:
        reports.write_report_zip(case, storage, spool)
    path = Path(spool.name)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"case_{case_id}.zip",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.get("/{case_id}/files/{path:path}", response_class=StreamingResponse)
def get_case_file(
    case_id: UUID, path: str, principal: PrincipalDep, session: ReadSessionDep, storage: StorageDep
) -> StreamingResponse:
    """A stored file of the case (original or heatmap), for storage backends without presigned URLs."""
    cases.get_case(session, principal.tenant_id, case_id)
    key = f"cases/{case_id}/{path}"
    try:
        stream = storage.open(key)
    except (KeyError, ValueError):
        raise Problem("NOT_FOUND", f"no file {path!r} in case {case_id}") from None
    image = cases.find_image_by_key(session, case_id, key) if path.startswith("originals/") else None
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    headers = {}
    if image is not None:
        media_type = ImageFormat(image.format).mime_type if image.format else media_type
        headers["Content-Disposition"] = f"inline; filename*=UTF-8''{quote(image.filename, safe='')}"
    return StreamingResponse(_iterate(stream), media_type=media_type, headers=headers)


def _iterate(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(1024 * 1024):
            yield chunk
