"""Synchronous tools: metadata and hashes of one image, comparison of two."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import PrincipalDep, SettingsDep
from api.problems import Problem
from api.schemas import CompareResult, MetadataResult
from api.uploads import IncomingFile, UploadForm, read_multipart, to_intake
from forensics import DecodedImage, load_image
from forensics.methods.metadata import extract_metadata
from forensics.pipeline import file_info
from service.compare import compare_images
from service.intake import refusal
from service.settings import Settings

router = APIRouter(prefix="/v1", tags=["tools"])


def _body(*names: str) -> dict[str, Any]:
    properties = {name: {"type": "string", "format": "binary"} for name in names}
    schema = {"type": "object", "required": list(names), "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _pick(form: UploadForm, field: str) -> IncomingFile:
    parts = [f for f in form.files if f.field == field]
    if not parts:
        raise Problem("NO_FILE", f'no file in the "{field}" field')
    return parts[0]


def _decode(part: IncomingFile, settings: Settings) -> DecodedImage:
    intake = to_intake(part, settings.max_file_bytes)
    if intake.error_code is not None or intake.path is None:
        raise refusal(intake)
    data = intake.path.read_bytes()
    return load_image(data, filename=part.filename, max_pixels=settings.max_pixels, max_bytes=settings.max_file_bytes)


async def _form(request: Request, settings: Settings) -> UploadForm:
    return await read_multipart(
        request, max_file_bytes=settings.max_file_bytes, max_request_bytes=2 * settings.max_file_bytes + 65536, max_files=2
    )


@router.post("/metadata", response_model=MetadataResult, openapi_extra=_body("image"))
async def metadata(request: Request, principal: PrincipalDep, settings: SettingsDep) -> MetadataResult:
    """Metadata (EXIF, XMP, IPTC, C2PA...) and hashes of one image (field `image`), synchronously."""
    form = await _form(request, settings)
    try:
        part = _pick(form, "image")
        image = await run_in_threadpool(_decode, part, settings)
    finally:
        form.cleanup()
    return await run_in_threadpool(lambda: MetadataResult(file=file_info(image), metadata=extract_metadata(image)))


@router.post("/compare", response_model=CompareResult, openapi_extra=_body("image_a", "image_b"))
async def compare(request: Request, principal: PrincipalDep, settings: SettingsDep) -> CompareResult:
    """Compare two images (fields `image_a`, `image_b`): identical or not, SSIM, perceptual-hash distance."""
    form = await _form(request, settings)
    try:
        part_a, part_b = _pick(form, "image_a"), _pick(form, "image_b")
        a = await run_in_threadpool(_decode, part_a, settings)
        b = await run_in_threadpool(_decode, part_b, settings)
    finally:
        form.cleanup()
    result = await run_in_threadpool(compare_images, a, b)
    return CompareResult(**result, a=file_info(a), b=file_info(b))
