"""Pictures the pages show: an image's display rendition and thumbnail, and the colour scale.

Stored maps and originals are served by the JSON API's ``/v1/cases/{id}/files/...``; these
are the pictures made for the page alone (see :mod:`service.renditions`).
"""

from functools import cache
from typing import Literal
from uuid import UUID

import numpy as np
from fastapi import APIRouter, Response

from api.deps import ReadSessionDep, SettingsDep, StorageDep
from api.web.render import PageRoute
from api.web.session import VisitorDep
from forensics.render import colour_png
from service import cases, renditions

router = APIRouter(route_class=PageRoute, include_in_schema=False)

#: A rendition never changes once made; the browser may keep it for a day (it is private to the tenant).
RENDITION_CACHE = "private, max-age=86400"


@router.get("/cases/{case_id}/images/{image_id}/{kind}.jpg", response_class=Response)
def rendition(
    case_id: UUID,
    image_id: UUID,
    kind: Literal["display", "thumbnail"],
    visitor: VisitorDep,
    session: ReadSessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> Response:
    """The image reduced for the page: ``display`` (long side 2048) or ``thumbnail`` (320)."""
    image = cases.get_image(session, visitor.principal.tenant_id, case_id, image_id)
    data = renditions.rendition(storage, image, kind, settings)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": RENDITION_CACHE, "X-Content-Type-Options": "nosniff"})


@router.get("/colour-scale.png", response_class=Response)
def colour_scale() -> Response:
    """The colour scale of every map on the pages, 0 (left) to 255 (right): the legend, and the
    table the viewer's script colours the gray maps with, so both match the server's renderings."""
    return Response(_scale_png(), media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})


@cache
def _scale_png() -> bytes:
    return colour_png(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :], (256, 1))
