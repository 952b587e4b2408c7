"""The schema: cases, their images, and one finding per (image, method).

Storage *keys* are stored, never URLs (URLs are made per request: presigned or served).
Status columns are plain strings with CHECK constraints so that SQLite and Postgres agree.
"""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (_check("status", CaseStatus), Index("ix_cases_created_id", "created_at", "id"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    label: Mapped[str | None] = mapped_column(String(200))
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.QUEUED)
    image_count: Mapped[int] = mapped_column(Integer, default=0)
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
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None]

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
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    image: Mapped[Image] = relationship(back_populates="findings")
