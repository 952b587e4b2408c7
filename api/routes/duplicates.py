"""Near-duplicate search: which of the tenant's stored images show the same picture as an uploaded one."""

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import PrincipalDep, ReadSessionDep, SettingsDep
from api.routes.tools import _body, _decode, _form, _pick
from api.schemas import DuplicateSearchResult, NearDuplicate
from forensics import keypoints, pdq
from service import duplicates

router = APIRouter(prefix="/v1/duplicates", tags=["duplicates"])


@router.post("/search", response_model=DuplicateSearchResult, openapi_extra=_body("image"))
async def search_duplicates(
    request: Request, principal: PrincipalDep, session: ReadSessionDep, settings: SettingsDep
) -> DuplicateSearchResult:
    """Search the tenant's images (all cases, all time) for near-duplicates of one image (field `image`):
    re-encodes, resizes, flips and quarter-turns of the same picture, nearest first (PDQ, 256 bits),
    then crops of it or pictures it was cropped from (`match` "keypoints": shared keypoints on one transform)."""
    form = await _form(request, settings)
    try:
        image = await run_in_threadpool(_decode, _pick(form, "image"), settings)
    finally:
        form.cleanup()
    queries, quality = await run_in_threadpool(duplicates.hash_queries, image.luma)
    features = await run_in_threadpool(keypoints.extract, image.luma)
    matches = await run_in_threadpool(duplicates.search, session, principal.tenant_id, queries, quality, features=features)
    return DuplicateSearchResult(
        pdq=pdq.PdqHash(queries[0], quality).hex,
        quality=quality,
        max_distance=duplicates.MATCH_DISTANCE,
        matches=[NearDuplicate(**vars(m)) for m in matches],
    )
