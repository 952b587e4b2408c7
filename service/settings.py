"""Every setting of the service, read from environment variables in one place.

The defaults give the *embedded* mode: SQLite, a local storage folder and Celery's
filesystem transport, all under ``FORENSICS_HOME`` (``./forensics-data``). Pointing
``DATABASE_URL``, ``BROKER_URL`` and ``STORAGE_URL`` at Postgres, Redis and S3 gives the
distributed mode; no code path differs beyond what these settings select.
"""

from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    """Accept both ``NAME`` and ``FORENSICS_NAME`` for the settings shared with other tools."""
    return AliasChoices(name, f"FORENSICS_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORENSICS_", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production", "test"] = "development"
    home: Path = Field(default=Path("forensics-data"), description="Folder of the embedded mode's data")

    database_url: str = Field(default="", validation_alias=_env("DATABASE_URL"))
    broker_url: str = Field(default="filesystem://", validation_alias=_env("BROKER_URL"))
    storage_url: str = Field(default="", validation_alias=_env("STORAGE_URL"))

    s3_endpoint_url: str | None = Field(default=None, validation_alias=_env("S3_ENDPOINT_URL"))
    s3_public_endpoint_url: str | None = Field(
        default=None,
        validation_alias=_env("S3_PUBLIC_ENDPOINT_URL"),
        description="Endpoint clients reach, for presigned URLs (when the services reach S3 by another name)",
    )
    s3_region: str = Field(default="us-east-1", validation_alias=_env("S3_REGION"))
    s3_access_key_id: str | None = Field(default=None, validation_alias=_env("S3_ACCESS_KEY_ID"))
    s3_secret_access_key: str | None = Field(default=None, validation_alias=_env("S3_SECRET_ACCESS_KEY"))
    s3_create_bucket: bool = Field(default=False, description="Create the bucket at start if missing")
    presign_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    share_seconds: int = Field(default=900, ge=60, le=24 * 3600, description="Life of the public URL of an image shared for reverse search")

    # Defaults of the case anomalies' limits (service.anomalies); a tenant's anomaly_limits and a case's override them.
    anomaly_max_time_spread_hours: float = Field(default=72.0, gt=0)
    anomaly_max_distance_km: float = Field(default=50.0, gt=0)
    anomaly_max_age_days: float = Field(default=30.0, gt=0)

    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_request_bytes: int = Field(default=5 * 1024**3, ge=1)
    max_files_per_case: int = Field(default=1000, ge=1)
    max_pixels: int = Field(
        default=50_000_000, ge=1, le=200_000_000, description="Pixels of one image; the default keeps a worker within 1.5 GB"
    )

    methods: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma list of methods to run; empty = every registered method"
    )
    method_soft_time_limit: int = Field(default=240, ge=1)
    method_time_limit: int = Field(default=300, ge=2)
    prepare_time_limit: int = Field(default=120, ge=2)
    fuse_time_limit: int = Field(default=120, ge=2)
    pdf_time_limit: int = Field(default=300, ge=2, description="Seconds, hard limit of rendering a closed case's PDF in the worker")
    max_attempts: int = Field(default=3, ge=1, description="Deliveries of one method before it is recorded as an error")
    requeue_after: int = Field(default=900, ge=1, description="Seconds before queued work whose message is lost is re-sent")
    lease_seconds: float = Field(
        default=30.0, gt=0, description="Running work not heard from for this long (its process died) is run again"
    )
    reconcile_interval: float = Field(default=15.0, gt=0)
    visibility_timeout: int = Field(
        default=45, ge=1, description="Redis: seconds before a message taken by a worker that died is delivered again"
    )
    broker_key_prefix: str = Field(default="", description="Redis: prefix of every key (several deployments on one Redis)")
    worker_max_tasks_per_child: int = Field(
        default=10000,
        ge=1,
        description="Pool processes are recycled after this many tasks (rarely: each recycling can stall a slot for 5 s)",
    )
    worker_max_memory_mb: int = Field(
        default=3072, ge=0, description="Pool processes are recycled after a task leaves them above this resident size (0 = never)"
    )
    decode_cache_size: int = Field(default=2, ge=1, description="Decoded images kept per worker process")
    worker_soft_shutdown_seconds: float = Field(
        default=5.0,
        ge=0,
        description="On a cold shutdown (SIGQUIT; SIGTERM to forensics serve) running tasks get this long to finish, then go back to the queue",
    )
    worker_retain_memory: bool = Field(
        default=True,
        description="Pool processes keep freed memory for the next image instead of giving it back (glibc; see forensics/allocator.py)",
    )
    worker_pin_cpus: bool = Field(
        default=False, description="Pin each worker pool process to one CPU (pool process i to the i-th allowed CPU, cyclically)"
    )
    decode_share_bytes: int = Field(
        default=4 * 1024**3, ge=0, description="Decoded images shared by the worker processes of a machine, in bytes (0 = off)"
    )
    decode_share_folder: Path | None = Field(default=None, description="Their folder; default /dev/shm/forensics-decoded-<uid>")

    # Integrations: tenants, limits, webhooks, direct uploads, URL ingestion
    api_key: str | None = Field(default=None, description="Embedded mode: the first API key (else one is made and printed)")
    public_base_url: str = Field(default="http://127.0.0.1:8000", description="Base of the links in webhook payloads")
    redis_url: str | None = Field(default=None, description="Redis for rate limits; default: BROKER_URL when it is Redis")
    rate_limit_per_minute: int = Field(default=600, ge=0, description="Requests per tenant per minute (0 = no limit)")
    image_quota_per_day: int = Field(default=0, ge=0, description="Images per tenant per UTC day (0 = no quota)")
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        # Standard Webhooks / Svix: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; then 14 h, 24 h (about 3 days)
        default_factory=lambda: [0, 5, 300, 1800, 7200, 18000, 36000, 36000, 50400, 86400],
        description="Seconds before each attempt (the first is the delay of the first attempt)",
    )
    webhook_jitter: float = Field(default=0.2, ge=0, le=1, description="Relative random spread of each retry delay")
    webhook_timeout: float = Field(default=15.0, gt=0, description="Seconds for one delivery attempt")
    webhook_poll_interval: float = Field(default=5.0, gt=0, description="Seconds between scans of the outbox for due deliveries")
    webhook_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts or CIDRs allowed despite SSRF rules (development and tests only)"
    )
    upload_slot_seconds: int = Field(default=3600, ge=60, description="Lifetime of a direct-upload slot")
    multipart_threshold: int = Field(default=64 * 1024**2, ge=1, description="Slots for larger files are S3 multipart uploads")
    multipart_part_bytes: int = Field(default=16 * 1024**2, ge=1, description="Part size of multipart slots (S3: at least 5 MiB)")
    max_urls_per_case: int = Field(default=1000, ge=1)
    fetch_timeout: float = Field(default=20.0, gt=0, description="Seconds to fetch one image by URL")
    max_archive_entries: int = Field(default=1000, ge=1, description="Entries in one ZIP archive")
    max_archive_ratio: int = Field(default=200, ge=1, description="Largest compression ratio of a ZIP entry (zip-bomb guard)")
    idempotency_seconds: int = Field(default=86400, ge=60, description="How long an Idempotency-Key is remembered")
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30, description="Lifetime of a web page sign-in, in hours")

    # Operations: logs and metrics (docs/operations.md)
    log_format: Literal["json", "text"] = Field(default="text", description="Log lines as JSON objects or as text for people")
    metrics_token: str | None = Field(default=None, description="Bearer token of GET /metrics (unset: /metrics is not served)")
    worker_metrics_port: int = Field(default=0, ge=0, le=65535, description="Port of a worker's own /metrics (0 = none)")
    worker_metrics_host: str = Field(default="127.0.0.1", description="Address a worker's /metrics listens on")

    @field_validator("methods", "webhook_allowlist", "webhook_retry_schedule", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _defaults_and_checks(self) -> "Settings":
        self.home = self.home.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'forensics.db'}"
        if not self.storage_url:
            self.storage_url = (self.home / "storage").as_uri()
        if self.redis_url is None and self.broker_url.startswith(("redis://", "rediss://")):
            self.redis_url = self.broker_url
        if not self.webhook_retry_schedule:
            raise ValueError("FORENSICS_WEBHOOK_RETRY_SCHEDULE needs at least one delay")
        if self.method_soft_time_limit >= self.method_time_limit:
            raise ValueError("FORENSICS_METHOD_SOFT_TIME_LIMIT must be below FORENSICS_METHOD_TIME_LIMIT")
        if urlparse(self.storage_url).scheme not in ("s3", "file"):
            raise ValueError(f"STORAGE_URL must be s3://bucket/prefix or file:///path, got {self.storage_url!r}")
        if self.environment == "production" and self.s3_secret_access_key in {"minioadmin", "changethis", "changeme", "change-this-secret"}:
            raise ValueError("refusing a placeholder S3 secret in production: set S3_SECRET_ACCESS_KEY")
        if self.environment == "production" and self.metrics_token in {"change-this-metrics-token", "changeme", "changethis"}:
            raise ValueError("refusing a placeholder metrics token in production: set FORENSICS_METRICS_TOKEN")
        return self

    @cached_property
    def broker_folder(self) -> Path:
        return self.home / "broker"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem:")


@lru_cache
def get_settings() -> Settings:
    """The process's settings (read once; tests clear the cache after changing the environment)."""
    return Settings()
