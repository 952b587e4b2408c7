"""Cases: create from a batch upload, list, poll, read image reports, download the dossier."""

import mimetypes
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from api.deps import LinkDep, PrincipalDep, ReadSessionDep, SessionDep, SettingsDep, StorageDep
from api.idempotency import idempotency_key, json_answer
from api.problems import Problem
from api.schemas import (
    CaseFromSources,
    CaseList,
    CaseListItem,
    CasePublic,
    ImageError,
    ImageReport,
    ImageSummary,
    Progress,
    ReverseSearch,
)
from api.status_cache import make_body, status_bodies
from api.uploads import UploadForm, read_multipart, to_intake
from forensics.formats import ImageFormat
from forensics.options import Sensitivity
from service import anomalies, case_pdf, cases, duplicates, idempotency, intake, names, pdf_report, reports, reverse_search
from service.intake import Answer, Archive, CaseRequest
from service.models import Case, CaseStatus, Image
from service.settings import Settings

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
                        "sensitivity": {
                            "type": "string",
                            "enum": [s.value for s in Sensitivity],
                            "default": Sensitivity.DEFAULT.value,
                            "description": "deep scan: fast, default or thorough (more passes, more time)",
                        },
                        **{
                            f"anomaly_{name}": {"type": "number", "exclusiveMinimum": 0, "description": f"this case's anomaly limit {name}"}
                            for name in anomalies.LIMITS
                        },
                    },
                }
            },
            "application/json": {"schema": CaseFromSources.model_json_schema()},
        },
    },
}
MAX_JSON_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = "2"


def _case_public(request: Request, case: Case, found: dict[str, list[dict[str, Any]]] | None = None) -> CasePublic:
    """The case status; ``found`` is each image's anomalies (:func:`service.anomalies.for_case`), none at creation."""
    found = found or {}
    return CasePublic(
        id=case.id,
        label=case.label,
        sensitivity=case.sensitivity,
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
                anomalies=sorted({a["rule"] for a in found.get(str(i.id), [])}),
            )
            for i in case.images
        ],
        report_url=str(request.url_for("get_report_zip", case_id=case.id)),
        anomalies=anomalies.summary(found),
    )


def _text_field(value: str | None, name: str, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > limit:
        raise Problem("BAD_REQUEST", f"{name} is longer than {limit} characters")
    if found := names.unsafe_characters(value):
        raise Problem("BAD_REQUEST", f"{name} contains characters that are not allowed: {', '.join(found)}")
    return value.strip()


def _sensitivity(value: str | None) -> Sensitivity:
    if value is None or not value.strip():
        return Sensitivity.DEFAULT
    try:
        return Sensitivity(value.strip())
    except ValueError:
        raise Problem("BAD_REQUEST", f"sensitivity must be one of {', '.join(s.value for s in Sensitivity)}") from None


def _limits(fields: dict[str, str]) -> dict[str, float] | None:
    """The multipart form's ``anomaly_<limit>`` fields (positive numbers), or None without any."""
    limits: dict[str, float] = {}
    for name in anomalies.LIMITS:
        value = fields.get(f"anomaly_{name}")
        if value is None or not value.strip():
            continue
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not 0 < number <= anomalies.MAX_LIMITS[name]:
            raise Problem("BAD_REQUEST", f"anomaly_{name} must be a positive number up to {anomalies.MAX_LIMITS[name]:.0f}")
        limits[name] = number
    return limits or None


def _from_multipart(form: UploadForm, max_file_bytes: int) -> CaseRequest:
    fingerprint = idempotency.fingerprint(
        {"fields": form.fields, "files": [(f.field, f.filename, f.size, None if f.too_large else f.sha256) for f in form.files]}
    )
    return CaseRequest(
        fingerprint=fingerprint,
        label=_text_field(form.fields.get("label"), "label", 200),
        callback_url=_text_field(form.fields.get("callback_url"), "callback_url", 2000),
        sensitivity=_sensitivity(form.fields.get("sensitivity")),
        anomaly_limits=_limits(form.fields),
        files=tuple(to_intake(f, max_file_bytes) for f in form.files if f.field == "images"),
        archives=tuple(Archive(f.filename, f.path, f.too_large) for f in form.files if f.field == "archive"),
    )


async def _from_json(request: Request) -> CaseRequest:
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        raise Problem("FILE_TOO_LARGE", f"the JSON body is larger than {MAX_JSON_BYTES:,} bytes")
    try:
        body = CaseFromSources.model_validate_json(raw)
    except ValidationError as exc:
        raise Problem("BAD_REQUEST", "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    return CaseRequest(
        fingerprint=idempotency.fingerprint(body.model_dump(mode="json")),
        label=_text_field(body.label, "label", 200),
        callback_url=_text_field(body.callback_url, "callback_url", 2000),
        sensitivity=body.sensitivity,
        anomaly_limits=body.anomaly_limits.model_dump(exclude_none=True) or None if body.anomaly_limits else None,
        upload_ids=tuple(body.upload_ids),
        urls=tuple(body.urls),
    )


def _created(request: Request, case: Case) -> Answer:
    """The 202 of a new case, as stored for its Idempotency-Key."""
    headers = {"Location": str(request.url_for("get_case", case_id=case.id)), "Retry-After": RETRY_AFTER_SECONDS}
    return Answer(202, _case_public(request, case).model_dump_json(), headers)


@router.post("", status_code=202, response_model=CasePublic, openapi_extra=CREATE_CASE)
async def create_case(
    request: Request, principal: PrincipalDep, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> Response:
    """Create a case and return it at once (analysis runs in the background). Multipart: files in `images`
    and/or ZIP archives in `archive`. JSON: `upload_ids` of direct uploads and/or image `urls`.
    Honours `Idempotency-Key`."""
    key = idempotency_key(request)
    form: UploadForm | None = None
    try:
        if request.headers.get("content-type", "").lower().startswith("application/json"):
            case_request = await _from_json(request)
        else:
            form = await read_multipart(
                request,
                max_file_bytes=settings.max_file_bytes,
                max_request_bytes=settings.max_request_bytes,
                max_files=settings.max_files_per_case,
            )
            case_request = _from_multipart(form, settings.max_file_bytes)
        answer = await run_in_threadpool(
            intake.create_case, session, storage, settings, principal, case_request, key=key, render=partial(_created, request)
        )
    finally:
        if form is not None:
            form.cleanup()
    return json_answer(answer.status, answer.body, answer.headers, replayed=answer.replayed)


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
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Case status, progress and each image's status, score and verdict, and the count of contextual anomalies
    per rule (ETag; Retry-After while running)."""
    fingerprint = cases.status_fingerprint(session, principal.tenant_id, case_id)
    base_url = str(request.base_url)
    status = status_bodies.get(case_id, base_url, fingerprint)
    if status is None:
        case = cases.get_case(session, principal.tenant_id, case_id)
        # Anomalies read the images' metadata (written with the status moves the fingerprint counts) and
        # near-duplicates of this case or stored before it, so the cached body stays true until the fingerprint moves.
        body = _case_public(request, case, anomalies.for_case(session, settings, case)).model_dump_json().encode()
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
    request: Request, case_id: UUID, image_id: UUID, principal: PrincipalDep, session: ReadSessionDep, link: LinkDep, settings: SettingsDep
) -> ImageReport:
    """The full report of one image: file, metadata, every finding, heatmap URLs, method versions, SHA-256,
    contextual anomalies within the case, and whether it was shared for reverse image search (with the links while shared)."""
    image = cases.get_image(session, principal.tenant_id, case_id, image_id)
    near = duplicates.near_duplicates_of(session, principal.tenant_id, image.id)
    extra = _image_extra(request, session, settings, principal.tenant_id, image)
    return ImageReport.model_validate(reports.image_report(image, link, near, **extra))


def _image_extra(request: Request, session: Any, settings: Settings, tenant_id: UUID, image: Image) -> dict[str, Any]:
    """The report keys looked up beyond the image itself: its anomalies within the case and its reverse-search state."""
    found = anomalies.for_case(session, settings, cases.get_case(session, tenant_id, image.case_id))
    token = reverse_search.live_token(image)
    public = str(request.url_for("get_shared_image", token=token)) if token else None
    return {"anomalies": found.get(str(image.id), []), "reverse_search": reverse_search.report(image, public)}


@router.post("/{case_id}/images/{image_id}/share", response_model=ReverseSearch)
def share_image(
    request: Request, case_id: UUID, image_id: UUID, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> ReverseSearch:
    """Let this one original leave the newsroom for reverse image search: a public URL of it, valid
    `share_seconds` (15 minutes by default), and the links of the major reverse-search services. Records
    when and with which key it was first shared; the report says so from then on."""
    image = cases.get_image(session, principal.tenant_id, case_id, image_id)
    if image.storage_key is None:
        raise Problem("NOT_FOUND", "the original of this image is not stored (yet), so it cannot be shared")
    token = reverse_search.share(image, principal.key_prefix, settings.share_seconds)
    session.commit()
    return ReverseSearch.model_validate(reverse_search.report(image, str(request.url_for("get_shared_image", token=token))))


@router.get("/{case_id}/report.zip", response_class=FileResponse)
def get_report_zip(
    case_id: UUID, principal: PrincipalDep, session: ReadSessionDep, storage: StorageDep, settings: SettingsDep
) -> FileResponse:
    """The dossier: `batch_summary.json` (with the case's anomalies) and, per image, `forensic_report.json` with its heatmaps."""
    case = cases.get_case_with_findings(session, principal.tenant_id, case_id)
    found = anomalies.for_case(session, settings, case)
    spool = tempfile.NamedTemporaryFile(prefix="forensics-report-", suffix=".zip", delete=False)  # noqa: SIM115
    with spool:
        reports.write_report_zip(case, storage, spool, found)
    path = Path(spool.name)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"case_{case_id}.zip",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


PDF_RESPONSE = {200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}, "description": "The PDF"}}


def _pdf(write: Callable[[BinaryIO], None], filename: str) -> FileResponse:
    """A PDF written to a spooled file, served and then deleted (as the dossier zip)."""
    spool = tempfile.NamedTemporaryFile(prefix="forensics-report-", suffix=".pdf", delete=False)  # noqa: SIM115
    try:
        with spool:
            write(spool)
    except BaseException:
        Path(spool.name).unlink(missing_ok=True)
        raise
    path = Path(spool.name)
    return FileResponse(path, media_type="application/pdf", filename=filename, background=BackgroundTask(path.unlink, missing_ok=True))


@router.get("/{case_id}/report.pdf", response_class=FileResponse, responses=PDF_RESPONSE)
def get_case_pdf(
    case_id: UUID, principal: PrincipalDep, session: ReadSessionDep, storage: StorageDep, settings: SettingsDep
) -> FileResponse:
    """The editors' PDF of the case: a cover with the verdicts, then per image its verdict, score, overlay,
    findings, metadata and evidence chain. A closed case's PDF is the one the worker rendered when it
    closed; an open case's is rendered on request from what it holds."""
    filename = f"case_{case_id}.pdf"
    if (key := case_pdf.stored(cases.get_case(session, principal.tenant_id, case_id), storage)) is not None:
        return _pdf(partial(case_pdf.copy, storage, key), filename)
    case = cases.get_case_with_findings(session, principal.tenant_id, case_id)
    return _pdf(lambda out: case_pdf.render(case, storage, out, anomalies.for_case(session, settings, case)), filename)


@router.get("/{case_id}/images/{image_id}/report.pdf", response_class=FileResponse, responses=PDF_RESPONSE)
def get_image_pdf(
    case_id: UUID, image_id: UUID, principal: PrincipalDep, session: ReadSessionDep, storage: StorageDep, settings: SettingsDep
) -> FileResponse:
    """The editors' PDF of one image: the content of its report, with the overlay."""
    image = cases.get_image(session, principal.tenant_id, case_id, image_id)
    found = anomalies.for_case(session, settings, cases.get_case(session, principal.tenant_id, case_id))
    extra = {
        "near_duplicates": duplicates.near_duplicates_of(session, principal.tenant_id, image.id),
        "anomalies": reports.pdf_anomalies(found.get(str(image.id), [])),
    }
    return _pdf(partial(pdf_report.write_image_pdf, image, storage, extra=extra), f"image_{image_id}.pdf")


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
