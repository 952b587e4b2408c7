"""The schema: tenants and their API keys; cases, their images, and one finding per (image, method);
webhook endpoints and the webhook outbox; idempotency records; direct-upload slots; web page sessions.

Storage *keys* are stored, never URLs (URLs are made per request: presigned or served).
Status columns are plain strings with CHECK constraints so that SQLite and Postgres agree.
"""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from forensics.options import Sensitivity


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A time stamp that reads back as an aware UTC ``datetime`` on every database.

    Postgres (``timestamptz``) returns aware values in the session's time zone; SQLite has
    no time zone type and returns the naive wall time it was given. So values are written in
    UTC (a naive one is taken to be UTC) and read back marked or converted as UTC: callers
    compare and subtract them without knowing which database they run on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _utc(value)


class CaseStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class ImageStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FUSING = "fusing"
    COMPLETED = "completed"
    FAILED = "failed"


class FindingStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"


IMAGE_DONE = (ImageStatus.COMPLETED, ImageStatus.FAILED)
FINDING_DONE = (FindingStatus.OK, FindingStatus.NOT_APPLICABLE, FindingStatus.ERROR)


def _check(column: str, enum: type[StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{v.value}'" for v in enum)
    return CheckConstraint(f"{column} IN ({values})", name=f"{column}_valid")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class Tenant(Base):
    """An organisation: every case, key, webhook endpoint and upload belongs to exactly one."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: Secret (``whsec_...``) signing the deliveries to per-case ``callback_url``s.
    callback_secret: Mapped[str] = mapped_column(String(100))
    #: Overrides of the default limits (None = the settings' default).
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    images_per_day: Mapped[int | None] = mapped_column(Integer)
    #: The tenant's default limits of the case anomalies (service.anomalies.LIMITS keys; None = the settings' defaults).
    anomaly_limits: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A key is stored only as its SHA-256 (keys are 256-bit random, so a fast hash is the right one);
    ``prefix`` is the readable start shown in listings and used to revoke."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    tenant: Mapped[Tenant] = relationship()


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        _check("status", CaseStatus),
        _check("sensitivity", Sensitivity),
        Index("ix_cases_created_id", "created_at", "id"),
        Index("ix_cases_tenant_created_id", "tenant_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    #: Nullable only for cases made before tenants existed; every query filters on it, so those are unreachable.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    #: How hard the deep scan looks at every image of the case (forensics.options.Sensitivity).
    sensitivity: Mapped[str] = mapped_column(String(16), default=Sensitivity.DEFAULT, server_default=Sensitivity.DEFAULT.value)
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.QUEUED)
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    #: The anomaly limits fixed at creation (settings, then tenant defaults, then the request); None = the current defaults.
    anomaly_limits: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None]

    images: Mapped[list["Image"]] = relationship(
        back_populates="case", order_by="Image.position", cascade="all, delete-orphan", passive_deletes=True
    )


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        _check("status", ImageStatus),
        UniqueConstraint("case_id", "position", name="uq_images_case_position"),
        Index("ix_images_status_updated", "status", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default=ImageStatus.QUEUED)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_detail: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    storage_key: Mapped[str | None] = mapped_column(String(500))
    #: Image to fetch by URL (by the worker's prepare step, which then sets sha256 and storage_key).
    source_url: Mapped[str | None] = mapped_column(String(2000))
    format: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None]
    height: Mapped[int | None]
    file_info: Mapped[dict[str, Any] | None]
    image_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    tamper_score: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(40))
    fused: Mapped[dict[str, Any] | None]
    heatmap_key: Mapped[str | None] = mapped_column(String(500))
    overlay_key: Mapped[str | None] = mapped_column(String(500))
    seconds: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Joins started: one that fails every time (past ``max_attempts``) fails the image instead of looping.
    fuse_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None]
    #: When a user first let the original leave for reverse image search, and with which key (its prefix).
    shared_at: Mapped[datetime | None]
    shared_by: Mapped[str | None] = mapped_column(String(32))
    #: The token of the latest short-lived public URL of the original (GET /v1/shared/{token}) and when it expires.
    share_token: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    share_expires_at: Mapped[datetime | None]

    case: Mapped[Case] = relationship(back_populates="images")
    findings: Mapped[list["FindingRow"]] = relationship(
        back_populates="image", order_by="FindingRow.position", cascade="all, delete-orphan", passive_deletes=True
    )


class FindingRow(Base):
    """One method's result on one image; the (image, method) pair is unique, so a redelivered task updates it."""

    __tablename__ = "findings"
    __table_args__ = (
        _check("status", FindingStatus),
        UniqueConstraint("image_id", "method", name="uq_findings_image_method"),
        Index("ix_findings_status_enqueued", "status", "enqueued_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    image_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=FindingStatus.PENDING)
    method_version: Mapped[str | None] = mapped_column(String(32))
    score: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None]
    heatmap_key: Mapped[str | None] = mapped_column(String(500))
    view_keys: Mapped[dict[str, Any] | None]
    seconds: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime | None]  # None: pending, its message could not be published
    started_at: Mapped[datetime | None]
    alive_at: Mapped[datetime | None]  # the running task's last heartbeat
    claimed_by: Mapped[str | None] = mapped_column(String(200))  # the delivery running it: task id and pool process
    finished_at: Mapped[datetime | None]

    image: Mapped[Image] = relationship(back_populates="findings")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookEndpoint(Base):
    """A tenant's receiver: URL, ``whsec_`` secret and the event types it wants."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one row per (event, destination), written in the transaction of the state change.

    ``id`` is the message id sent as ``webhook-id`` on every attempt (receivers deduplicate on it).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        _check("status", DeliveryStatus),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    attempt_log: Mapped[list["WebhookAttempt"]] = relationship(
        order_by="WebhookAttempt.attempted_at", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookAttempt(Base):
    """The delivery log: one row per attempt."""

    __tablename__ = "webhook_attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class IdempotencyRecord(Base):
    """``Idempotency-Key`` of a creating call: in flight until ``response_status`` is set, then replayed."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    route: Mapped[str] = mapped_column(String(100))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    response_headers: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UploadStatus(StrEnum):
    PENDING = "pending"
    USED = "used"


class Upload(Base):
    """A direct-upload slot: the client puts one object at ``storage_key``, then names the slot in a case."""

    __tablename__ = "uploads"
    __table_args__ = (_check("status", UploadStatus),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    storage_key: Mapped[str] = mapped_column(String(500))
    max_bytes: Mapped[int] = mapped_column(BigInteger)
    #: S3 multipart upload id while a multipart slot is not completed (None: a single-object slot, or completed).
    multipart_id: Mapped[str | None] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16), default=UploadStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class WebSession(Base):
    """A browser signed in to the web page with an API key. The cookie holds a random token and
    the row only its SHA-256 (like keys); ``csrf_token`` must come back with every form and
    state-changing request. Signing out revokes the session, not the key; revoking the key ends
    its sessions, since a session is valid only while its key is."""

    __tablename__ = "web_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]


class ImageHash(Base):
    """An image's PDQ perceptual hash (:mod:`forensics.pdq`), for near-duplicate search (:mod:`service.duplicates`).

    ``pdq`` is the hash of the picture as stored; ``variants`` the seven hashes of its flips and
    quarter-turns (7 x 32 bytes), so that a stored image searches for rotated copies without its
    pixels. ``keypoints`` are its local features (:class:`forensics.keypoints.Features`, about
    10 KB) for crop-tolerant search, and ``keypoint_keys`` the index keys of the strongest of them
    (uint32, little-endian); both are empty for images stored before they existed. ``seq`` orders
    rows so that the in-process indexes load only what they have not seen.
    """

    __tablename__ = "image_hashes"
    __table_args__ = (Index("ix_image_hashes_tenant_seq", "tenant_id", "seq"), Index("ix_image_hashes_tenant_pdq", "tenant_id", "pdq"))

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    image_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    pdq: Mapped[bytes] = mapped_column(LargeBinary(32))
    variants: Mapped[bytes] = mapped_column(LargeBinary(224))
    quality: Mapped[int] = mapped_column(Integer)
    keypoints: Mapped[bytes | None] = mapped_column(LargeBinary)
    keypoint_keys: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
