"""Cases: create from a batch upload, list, poll, read image reports, download the dossier."""

import hashlib
import logging
import mimetypes
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from api.deps import LinkDep, SessionDep, SettingsDep, StorageDep
from api.problems import Problem
from api.schemas import CaseList, CaseListItem, CasePublic, ImageError, ImageReport, ImageSummary, Progress
from api.uploads import read_multipart, refuse, to_intake
from forensics.formats import ImageFormat
from service import cases, queue, reports
from service.models import Case, CaseStatus

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/cases", tags=["cases"])

MULTIPART_CASE = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["images"],
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "label": {"type": "string", "maxLength": 200},
                        "callback_url": {"type": "string", "format": "uri"},
                    },
                }
            }
        },
    }
}
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
    return value.strip()


@router.post(
    "",
    status_code=202,
    response_model=CasePublic,
    openapi_extra=MULTIPART_CASE,
)
async def create_case(request: Request, session: SessionDep, storage: StorageDep, settings: SettingsDep) -> Response:
    """Upload one or many images (field `images`); returns the case at once, analysis runs in the background."""
    form = await read_multipart(
        request,
        max_file_bytes=settings.max_file_bytes,
        max_request_bytes=settings.max_request_bytes,
        max_files=settings.max_files_per_case,
    )
    try:
        files = [f for f in form.files if f.field == "images"]
        if not files:
            raise Problem("NO_FILE", 'no file in the "images" field')
        intakes = [to_intake(f, settings.max_file_bytes) for f in files]
        if all(i.error_code for i in intakes):
            raise refuse(intakes[0])
        callback_url = _text_field(form.fields.get("callback_url"), "callback_url", 2000)
        if callback_url and not callback_url.startswith(("http://", "https://")):
            raise Problem("BAD_REQUEST", "callback_url must be an http(s) URL")
        case, queued = await run_in_threadpool(
            cases.create_case,
            session,
            storage,
            label=_text_field(form.fields.get("label"), "label", 200),
            callback_url=callback_url,
            intakes=intakes,
        )
    finally:
        form.cleanup()
    try:
        await run_in_threadpool(queue.enqueue_prepare, queued)
    except Exception:  # the case is committed; the reconciler re-sends what could not be sent now
        logger.exception("could not enqueue case %s; the reconciler will retry", case.id)
    body = _case_public(request, case)
    return Response(
        body.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": str(request.url_for("get_case", case_id=case.id)), "Retry-After": RETRY_AFTER_SECONDS},
    )


@router.get("", response_model=CaseList)
def list_cases(
    request: Request,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> CaseList:
    """List cases, newest first, with cursor pagination."""
    try:
        page, next_cursor = cases.list_cases(session, limit=limit, cursor=cursor)
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
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Case status, progress and each image's status, score and verdict (ETag; Retry-After while running)."""
    case = cases.get_case(session, case_id)
    body = _case_public(request, case).model_dump_json()
    etag = f'"{hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()[:20]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if case.status in (CaseStatus.QUEUED, CaseStatus.RUNNING):
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    if if_none_match and etag in {t.strip().removeprefix("W/") for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/{case_id}/images/{image_id}", response_model=ImageReport)
def get_image_report(case_id: UUID, image_id: UUID, session: SessionDep, link: LinkDep) -> ImageReport:
    """The full report of one image: file, metadata, every finding, heatmap URLs, method versions, SHA-256."""
    image = cases.get_image(session, case_id, image_id)
    return ImageReport.model_validate(reports.image_report(image, link))


@router.get("/{case_id}/report.zip", response_class=FileResponse)
def get_report_zip(case_id: UUID, session: SessionDep, storage: StorageDep) -> FileResponse:
    """The dossier: `batch_summary.json` and, per image, `forensic_report.json` with its heatmaps."""
    case = cases.get_case_with_findings(session, case_id)
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
def get_case_file(case_id: UUID, path: str, session: SessionDep, storage: StorageDep) -> StreamingResponse:
    """A stored file of the case (original or heatmap), for storage backends without presigned URLs."""
    cases.get_case(session, case_id)
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
