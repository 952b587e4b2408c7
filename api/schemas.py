"""Response schemas, separate from the ORM models: public case, case list (cursor), image report, tools."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from forensics.options import Sensitivity
from service.anomalies import MAX_LIMITS
from service.names import TEXT_PATTERN

#: A webhook event type (service.webhooks.endpoints.EVENT_TYPES).
EventType = Literal["case.completed", "case.failed", "image.completed"]
#: A public http(s) URL as the client sends it (whether its address is public is checked by the route).
HttpUrl = Annotated[str, StringConstraints(min_length=8, max_length=2000, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f-\x9f]+$")]

#: Text a client sends to be stored: no control characters (Postgres refuses NUL), at most N characters.
Text200 = Annotated[str, StringConstraints(max_length=200, pattern=TEXT_PATTERN)]


class Problem(BaseModel):
    """An error as ``application/problem+json`` (RFC 9457) with the dossier's ``code``."""

    type: str
    title: str
    status: int
    detail: str | None = None
    code: str


class ImageError(BaseModel):
    code: str
    detail: str | None = None


class ImageSummary(BaseModel):
    id: UUID
    position: int
    filename: str
    status: str = Field(description="queued | running | fusing | completed | failed")
    sha256: str | None = None
    tamper_score: float | None = Field(None, description="0-100; 50 is the decision line")
    verdict: str | None = None
    error: ImageError | None = None
    url: str = Field(description="The image's full report")
    anomalies: list[str] = Field([], description="The contextual anomaly rules this image raises (information only; see its report)")


class Progress(BaseModel):
    total: int
    queued: int
    running: int
    completed: int
    failed: int


class CasePublic(BaseModel):
    id: UUID
    label: str | None = None
    sensitivity: Sensitivity = Field(Sensitivity.DEFAULT, description="how hard the deep scan looks: fast, default or thorough")
    status: str = Field(description="queued | running | completed | failed")
    created_at: datetime
    completed_at: datetime | None = None
    progress: Progress
    images: list[ImageSummary]
    report_url: str
    anomalies: dict[str, int] = Field(
        {}, description="Per anomaly rule, how many images raise it (time_spread, gps_distance, age, camera, duplicate); no effect on scores"
    )


class CaseListItem(BaseModel):
    id: UUID
    label: str | None = None
    status: str
    image_count: int
    created_at: datetime
    completed_at: datetime | None = None
    url: str


class CaseList(BaseModel):
    data: list[CaseListItem]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last page")


class FindingPublic(BaseModel):
    method: str
    version: str | None = None
    status: str = Field(description="pending | running | ok | not_applicable | error")
    score: float | None = None
    label: str | None = None
    summary: str | None = None
    details: dict[str, Any] = {}
    heatmap_url: str | None = Field(None, description="8-bit gray PNG, 255 = most suspicious")
    view_urls: dict[str, str | None] = {}
    seconds: float | None = None


class NearDuplicate(BaseModel):
    case_id: UUID
    image_id: UUID
    filename: str
    distance: int = Field(description="Hamming distance of the 256-bit PDQ hashes (0: the same picture)")
    first_seen: datetime
    match: Literal["pdq", "keypoints"] = Field(
        "pdq", description="pdq: within the PDQ distance; keypoints: shares a region on one transform (a crop, or the picture cropped from)"
    )
    inliers: int | None = Field(None, description="keypoints: keypoint pairs on the shared transform")
    coverage: float | None = Field(None, description="keypoints: share of the stored picture's area that the searched picture shows")


class DuplicateSearchResult(BaseModel):
    pdq: str = Field(description="The uploaded picture's PDQ hash, 64 hex digits")
    quality: int = Field(description="PDQ quality 0-100; below 50 only exact matches are searched")
    max_distance: int
    matches: list[NearDuplicate] = Field(description="The tenant's images showing the same picture, nearest first")


class AnomalyLimits(BaseModel):
    """A case's anomaly limits; an omitted one keeps the tenant's default."""

    max_time_spread_hours: float | None = Field(None, gt=0, le=MAX_LIMITS["max_time_spread_hours"], description="Capture times farther than this from the case's median")
    max_distance_km: float | None = Field(None, gt=0, le=MAX_LIMITS["max_distance_km"], description="GPS positions farther than this from the case's median position")
    max_age_days: float | None = Field(None, gt=0, le=MAX_LIMITS["max_age_days"], description="Pictures taken longer than this before the case was created")


class Anomaly(BaseModel):
    rule: str = Field(description="time_spread | gps_distance | age | camera | duplicate")
    message: str
    values: dict[str, Any] = Field(description="The values that raised it")
    limit: float | str | None = None


class ReverseSearch(BaseModel):
    shared: bool = Field(description="Whether a user let the original leave the newsroom for reverse image search")
    shared_at: datetime | None = None
    shared_by: str | None = Field(None, description="Prefix of the API key behind the request (or web session) that shared it")
    links: dict[str, str] = Field({}, description="Reverse-search links per service (only after sharing; the public URL is short-lived)")
    note: str | None = None


class ImageReport(BaseModel):
    id: UUID
    case_id: UUID
    file: str
    status: str
    error: ImageError | None = None
    sha256: str | None = None
    tamper_score: float | None = None
    verdict: str | None = None
    confidence: str | None = None
    summary: str | None = None
    issues: list[str] = []
    positives: list[str] = []
    recommendation: str | None = None
    bias: float | None = Field(None, description="Fusion bias (log-odds); the tamper score's log-odds is the bias plus the contributions")
    contributions: dict[str, float] = Field({}, description="Each method's contribution to the tamper score's log-odds (0: it raised nothing)")
    image: dict[str, Any] | None = Field(None, description="File information: hashes, format, size")
    metadata: dict[str, Any] | None = None
    original_url: str | None = None
    heatmap_url: str | None = Field(None, description="Fused map, 8-bit gray PNG, 255 = most suspicious")
    overlay_url: str | None = None
    findings: list[FindingPublic]
    created_at: datetime | None = None
    completed_at: datetime | None = None
    seconds: float | None = None
    near_duplicates: list[NearDuplicate] = Field([], description="The tenant's other images showing the same picture (PDQ) or a region of it (keypoints)")
    anomalies: list[Anomaly] = Field([], description="Contextual anomalies against the rest of the case (information; no effect on the score)")
    reverse_search: ReverseSearch | None = None


class MetadataResult(BaseModel):
    file: dict[str, Any] = Field(description="Name, SHA-256, MD5, size, format, dimensions")
    metadata: dict[str, Any]


class CompareResult(BaseModel):
    identical: bool
    identical_bytes: bool
    identical_pixels: bool
    same_dimensions: bool
    ssim: float = Field(description="Structural similarity of the luminance at a common size, -1..1")
    phash_distance: int = Field(description="Hamming distance of the 64-bit perceptual hashes")
    dhash_distance: int
    same_picture: bool
    a: dict[str, Any]
    b: dict[str, Any]


class Check(BaseModel):
    ok: bool
    seconds: float
    detail: str | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, Check]


class WebhookEndpointCreate(BaseModel):
    url: HttpUrl = Field(description="http(s) URL with a public address")
    event_types: list[EventType] = Field(min_length=1)
    description: Text200 | None = None


class WebhookEndpointUpdate(BaseModel):
    url: HttpUrl | None = None
    event_types: list[EventType] | None = Field(None, min_length=1)
    description: Text200 | None = None
    enabled: bool | None = Field(None, description="true enables an endpoint disabled by a 410")


class WebhookEndpointPublic(BaseModel):
    id: UUID
    url: str
    secret: str = Field(description="whsec_ secret: verify the webhook-signature with it")
    event_types: list[str]
    description: str | None = None
    enabled: bool
    disabled_reason: str | None = None
    created_at: datetime


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpointPublic]


class CallbackSecret(BaseModel):
    secret: str = Field(description="whsec_ secret signing the deliveries to cases' callback_url")


class WebhookAttemptPublic(BaseModel):
    attempted_at: datetime
    status_code: int | None = None
    error: str | None = None
    seconds: float


class WebhookDeliveryPublic(BaseModel):
    id: str = Field(description="The message id, sent as webhook-id on every attempt")
    event_type: str
    endpoint_id: UUID | None = None
    case_id: UUID | None = None
    url: str
    status: str = Field(description="pending | delivering | delivered | failed")
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    payload: dict[str, Any]
    attempt_log: list[WebhookAttemptPublic] = []


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryPublic]


class UploadFile(BaseModel):
    filename: str = Field(max_length=500)
    size: int = Field(ge=1, description="Bytes; the slot accepts 1..size bytes")


class UploadRequest(BaseModel):
    files: list[UploadFile] = Field(min_length=1)


class UploadPart(BaseModel):
    part_number: int
    url: str = Field(description="PUT the part's bytes here; keep the ETag header of the answer")
    size: int


class UploadPartDone(BaseModel):
    part_number: int = Field(ge=1, le=10000)
    etag: Text200


class UploadComplete(BaseModel):
    parts: list[UploadPartDone] = Field(min_length=1, max_length=10000)


class UploadSlot(BaseModel):
    upload_id: UUID
    filename: str
    method: str = Field(
        description="POST (form: fields, then the file as 'file'), PUT (raw body to url) or MULTIPART "
        "(PUT each part to its URL, then POST the ETags to complete_url)"
    )
    url: str | None = None
    parts: list[UploadPart] = []
    complete_url: str | None = None
    fields: dict[str, str] = Field({}, description="Form fields to send before the file (presigned POST)")
    headers: dict[str, str] = Field({}, description="Headers to send (PUT through the API: your Authorization)")
    max_bytes: int
    expires_at: datetime


class UploadSlots(BaseModel):
    data: list[UploadSlot]


class CaseFromSources(BaseModel):
    """Create a case from direct uploads and/or image URLs (JSON instead of multipart); with neither,
    the route answers 400 ``NO_FILE`` (an ``anyOf`` stating it misled schemathesis's negative tests)."""

    upload_ids: list[UUID] = []
    urls: list[HttpUrl] = []
    label: Text200 | None = None
    callback_url: HttpUrl | None = None
    sensitivity: Sensitivity = Field(Sensitivity.DEFAULT, description="deep scan: fast, default or thorough (more passes, more time)")
    anomaly_limits: AnomalyLimits | None = None
