"""The pages: cases, a new case, a case live while it runs, an image with its maps, a comparison.

Each page reads through the service functions the JSON API uses, filtered by the visitor's
tenant, so another organisation's case is a 404 here as it is there.
"""

import base64
import hashlib
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import HTMLResponse

from api.deps import ReadSessionDep, SettingsDep, StorageDep
from api.web.render import PageRoute, page
from api.web.session import VisitorDep
from forensics.fusion import DECISION_LINE
from forensics.render import colour_png
from service import anomalies, cases, reports, reverse_search
from service.compare import compare_case_images
from service.models import Case, CaseStatus, FindingStatus, ImageStatus
from service.storage import Storage

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CASES_PER_PAGE = 25
#: Formats a browser shows itself: only these offer "Load full resolution" (the original) in the viewer.
BROWSER_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "bmp"})
#: A case or image named in a compare URL: ``<case id>/<image id>``.
IMAGE_REF = r"^[0-9a-fA-F-]{36}/[0-9a-fA-F-]{36}$"


@router.get("/", response_class=HTMLResponse)
def cases_page(
    request: Request,
    visitor: VisitorDep,
    session: ReadSessionDep,
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,200}$")] = None,
) -> HTMLResponse:
    """The tenant's cases, newest first, with how many images crossed the line and failed."""
    try:
        found, next_cursor = cases.list_cases(session, visitor.principal.tenant_id, limit=CASES_PER_PAGE, cursor=cursor, label=q.strip())
    except ValueError:  # a cursor that is not one of ours: start again from the newest
        found, next_cursor = cases.list_cases(session, visitor.principal.tenant_id, limit=CASES_PER_PAGE, label=q.strip())
    tallies = cases.tallies(session, [c.id for c in found])
    context = {"visitor": visitor, "rows": [(c, tallies[c.id]) for c in found], "q": q, "cursor": cursor, "next_cursor": next_cursor}
    return page(request, "cases.html", context)


@router.get("/cases/new", response_class=HTMLResponse)
def new_case_page(request: Request, visitor: VisitorDep, settings: SettingsDep, storage: StorageDep) -> HTMLResponse:
    """Upload a batch: files, folders or ZIP archives, each straight to storage where it can take them."""
    context = {"visitor": visitor, "max_files": settings.max_files_per_case, "max_bytes": settings.max_file_bytes}
    return page(request, "new_case.html", context, connect_src=_upload_origins(storage))


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: UUID, visitor: VisitorDep, session: ReadSessionDep, settings: SettingsDep) -> HTMLResponse:
    """One case, live while it runs: each image's thumbnail, score, verdict, methods over the line, status."""
    etag = _rows_etag(cases.status_fingerprint(session, visitor.principal.tenant_id, case_id))
    case = cases.get_case_with_findings(session, visitor.principal.tenant_id, case_id)
    methods = sorted({f.method for image in case.images for f in image.findings})
    found = anomalies.for_case(session, settings, case)
    return page(request, "case.html", {"visitor": visitor, "etag": etag, "methods": methods, **_rows(case, found)})


@router.get("/cases/{case_id}/rows", response_class=HTMLResponse)
def case_rows(
    request: Request,
    case_id: UUID,
    visitor: VisitorDep,
    session: ReadSessionDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The case page's rows alone, for its script to poll: 304 while the case's status summary is unchanged."""
    etag = _rows_etag(cases.status_fingerprint(session, visitor.principal.tenant_id, case_id))
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    case = cases.get_case_with_findings(session, visitor.principal.tenant_id, case_id)
    response = page(request, "case_rows.html", _rows(case, anomalies.for_case(session, settings, case)))
    response.headers.update({"ETag": etag, "Cache-Control": "no-cache"})
    return response


@router.get("/cases/{case_id}/images/{image_id}", response_class=HTMLResponse)
def image_page(
    request: Request, case_id: UUID, image_id: UUID, visitor: VisitorDep, session: ReadSessionDep, settings: SettingsDep
) -> HTMLResponse:
    """One image: the picture with any map over it, the findings, the fused score's parts, the metadata, the
    contextual anomalies within the case, reverse image search (after the user shares it), downloads."""
    image = cases.get_image(session, visitor.principal.tenant_id, case_id, image_id)
    case = cases.get_case(session, visitor.principal.tenant_id, case_id)
    token = reverse_search.live_token(image)
    report = reports.image_report(
        image,
        lambda key: _file_url(request, key),
        anomalies=anomalies.for_case(session, settings, case).get(str(image.id), []),
        reverse_search=reverse_search.report(image, str(request.url_for("get_shared_image", token=token)) if token else None),
    )
    layers = [{"name": "fused", "title": "Fused", "url": report["heatmap_url"]}] if report["heatmap_url"] else []
    layers += [{"name": f["method"], "title": f"{f['method']} ({f['score']:.0f})" if f["score"] is not None else f["method"],
                "url": f["heatmap_url"]} for f in report["findings"] if f["heatmap_url"]]
    c2pa = next((f["details"].get("c2pa") for f in report["findings"] if f["method"] == "ai_generated" and f["details"]), None)
    context = {
        "visitor": visitor,
        "case": case,
        "report": report,
        "layers": layers,
        "c2pa": c2pa,
        "max_contribution": max([0.0, *report["contributions"].values()]),
        "others": [i for i in case.images if i.id != image.id and i.status != ImageStatus.FAILED],
        "full_resolution": image.format in BROWSER_FORMATS,
    }
    return page(request, "image.html", context)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    visitor: VisitorDep,
    session: ReadSessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    a: Annotated[str, Query(pattern=IMAGE_REF)],
    b: Annotated[str, Query(pattern=IMAGE_REF)],
) -> HTMLResponse:
    """Two stored images side by side: identical or not, SSIM, perceptual hashes, and where they differ."""
    first, second = (tuple(UUID(part) for part in ref.split("/")) for ref in (a, b))
    found = compare_case_images(session, storage, settings, visitor.principal.tenant_id, first, second)  # type: ignore[arg-type]
    difference = colour_png(found.difference, (found.difference.shape[1], found.difference.shape[0]))
    context = {
        "visitor": visitor,
        "first": found.first,
        "second": found.second,
        "result": found.result,
        "largest": found.largest,
        "difference_url": "data:image/png;base64," + base64.b64encode(difference).decode(),
    }
    return page(request, "compare.html", context)


def _rows(case: Case, found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What the case rows show: per image, whether its thumbnail can be shown (once analysed: then
    it decodes, and the API does not decode originals beside the workers), the methods over the line and
    the contextual anomalies (``found``, :func:`service.anomalies.for_case`), with their count per rule."""
    rows = [
        {
            "image": image,
            "picture": image.status == ImageStatus.COMPLETED,
            "over": [f.method for f in image.findings if f.status == FindingStatus.OK and f.score is not None and f.score >= DECISION_LINE],
            "anomalies": sorted({a["rule"].replace("_", " ") for a in found.get(str(image.id), [])}),
        }
        for image in case.images
    ]
    progress = cases.progress(case)
    flagged = sum(1 for i in case.images if i.tamper_score is not None and i.tamper_score >= DECISION_LINE)
    running = case.status in (CaseStatus.QUEUED, CaseStatus.RUNNING)
    counts = {rule.replace("_", " "): n for rule, n in anomalies.summary(found).items() if n}
    return {"case": case, "rows": rows, "progress": progress, "flagged": flagged, "running": running, "anomaly_counts": counts}


def _rows_etag(fingerprint: tuple[Any, ...]) -> str:
    return '"' + hashlib.sha256(repr(fingerprint).encode()).hexdigest()[:32] + '"'


def _file_url(request: Request, key: str) -> str:
    """A stored file of a case, served by this API whatever the storage, so the page's canvas may
    read its pixels (a presigned URL on another origin would taint the canvas)."""
    _, case_id, path = key.split("/", 2)
    return str(request.url_for("get_case_file", case_id=case_id, path=path).path)


def _upload_origins(storage: Storage) -> list[str]:
    """The origins a browser sends direct uploads to: those of the storage's presigned POSTs and
    part URLs (none for a local folder, whose slots are PUTs to this API)."""
    probe = "uploads/origin-probe"
    post = storage.presigned_post(probe, max_bytes=1)
    urls = [post["url"] if post else None, storage.presigned_url(probe)]
    return sorted({f"{p.scheme}://{p.netloc}" for p in map(urlsplit, filter(None, urls))})

