"""Direct uploads: slots with presigned S3 POSTs (or PUT through this API without S3)."""

import tempfile
from pathlib import Path
from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import PrincipalDep, SessionDep, SettingsDep, StorageDep
from api.idempotency import Idempotent
from api.problems import Problem
from api.schemas import UploadComplete, UploadPart, UploadRequest, UploadSlot, UploadSlots
from service import idempotency, ingest

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post("", status_code=201, response_model=UploadSlots)
async def create_upload_slots(
    request: Request, body: UploadRequest, principal: PrincipalDep, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> Response:
    """Ask for upload slots (file name and size each): upload each file to its slot, then create the case
    with `{"upload_ids": [...]}`. With S3 each slot is a presigned POST limited to its size (a multipart
    upload for big files); without S3, a PUT to this API. Honours `Idempotency-Key`."""
    if len(body.files) > settings.max_files_per_case:
        raise Problem("TOO_MANY_FILES", f"more than {settings.max_files_per_case} files")
    too_large = [f.filename for f in body.files if f.size > settings.max_file_bytes]
    if too_large:
        raise Problem("FILE_TOO_LARGE", f"{too_large[0]}: more than the limit of {settings.max_file_bytes:,} bytes")
    idem = await Idempotent.start(request, principal, "POST /v1/uploads")
    try:
        if (replay := idem.replay(idempotency.fingerprint(body.model_dump()))) is not None:
            return replay
        slots = await run_in_threadpool(
            ingest.create_slots, session, storage, principal.tenant_id, [(f.filename, f.size) for f in body.files], settings
        )
        auth = {"Authorization": "Bearer <your API key>"}
        data = []
        for slot in slots:
            upload = slot.upload
            common = {"upload_id": upload.id, "filename": upload.filename, "max_bytes": upload.max_bytes,
                      "expires_at": upload.expires_at}
            if slot.parts is not None:
                complete = str(request.url_for("complete_upload", upload_id=upload.id))
                data.append(UploadSlot(method="MULTIPART", parts=[UploadPart(**p) for p in slot.parts], complete_url=complete,
                                       headers=auth, **common))
            elif slot.post is not None:
                data.append(UploadSlot(method="POST", url=slot.post["url"], fields=slot.post["fields"], **common))
            else:
                url = str(request.url_for("put_upload", upload_id=upload.id))
                data.append(UploadSlot(method="PUT", url=url, headers=auth, **common))
        response = Response(UploadSlots(data=data).model_dump_json(), status_code=201, media_type="application/json")
        return await idem.store(response, {})
    finally:
        await idem.close()


@router.put(
    "/{upload_id}",
    status_code=204,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}}},
        }
    },
)
async def put_upload(upload_id: UUID, request: Request, principal: PrincipalDep, session: SessionDep, storage: StorageDep) -> Response:
    """The upload of one slot's file as the raw body, for storage without presigned POSTs (embedded mode)."""
    upload = await run_in_threadpool(ingest.pending_upload, session, principal.tenant_id, upload_id)
    if upload is None:
        raise Problem("NOT_FOUND", f"no pending upload slot {upload_id}")
    with tempfile.NamedTemporaryFile(prefix="forensics-put-") as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > upload.max_bytes:
                raise Problem("FILE_TOO_LARGE", f"more than the slot's {upload.max_bytes:,} bytes")
            spool.write(chunk)
        if size == 0:
            raise Problem("NO_FILE", "the body is empty")
        spool.flush()
        await run_in_threadpool(storage.put_file, upload.storage_key, Path(spool.name), "application/octet-stream")
    return Response(status_code=204)


@router.post("/{upload_id}/complete", status_code=204)
async def complete_upload(
    upload_id: UUID, body: UploadComplete, principal: PrincipalDep, session: SessionDep, storage: StorageDep
) -> Response:
    """Complete a multipart slot with the ETags of its parts."""
    parts = [(p.part_number, p.etag) for p in body.parts]
    try:
        upload = await run_in_threadpool(ingest.complete_multipart, session, storage, principal.tenant_id, upload_id, parts)
    except ingest.UploadError as exc:
        raise Problem(exc.code, str(exc)) from None
    if upload is None:
        raise Problem("NOT_FOUND", f"no pending upload slot {upload_id}")
    return Response(status_code=204)
