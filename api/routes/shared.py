"""The short-lived public URL of an image a user shared for reverse image search (no authentication: the token is the key)."""

from collections.abc import Iterator
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from api.deps import ReadSessionDep, StorageDep
from api.problems import Problem
from forensics.formats import ImageFormat
from service import reverse_search
from service.models import Image

router = APIRouter(prefix="/v1/shared", tags=["reverse search"])

Token = Annotated[str, Path(min_length=20, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.get("/{token}", response_class=StreamingResponse, responses={200: {"content": {"image/*": {}}, "description": "The original"}})
def get_shared_image(token: Token, session: ReadSessionDep, storage: StorageDep) -> StreamingResponse:
    """The original of a shared image, until its public URL expires (then 404, as an unknown token)."""
    image = session.scalar(select(Image).where(Image.share_token == token))
    if image is None or reverse_search.live_token(image) != token or image.storage_key is None:
        raise Problem("NOT_FOUND", "no shared image with this link, or the link has expired")
    try:
        stream = storage.open(image.storage_key)
    except (KeyError, ValueError):
        raise Problem("NOT_FOUND", "the shared image is no longer stored") from None
    media_type = ImageFormat(image.format).mime_type if image.format else "application/octet-stream"
    return StreamingResponse(_iterate(stream), media_type=media_type, headers={"Cache-Control": "no-store"})


def _iterate(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(1024 * 1024):
            yield chunk
