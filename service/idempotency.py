"""``Idempotency-Key`` for creating calls (draft-ietf-httpapi-idempotency-key-header).

The first request with a key reserves it (a row without a response); it then stores its
response with a fingerprint of its payload. A later request with the same key and the same
payload gets the stored response again; with another payload, 422; while the first is
still in flight, 409. A request that fails with an exception or a 5xx releases the key, so
the client may retry. Keys are per tenant and remembered ``FORENSICS_IDEMPOTENCY_SECONDS``;
a reservation left by a crashed process is taken over after :data:`STALE_SECONDS`.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from service.db import session_scope
from service.models import IdempotencyRecord, utcnow
from service.settings import get_settings

STALE_SECONDS = 900
MAX_KEY_LENGTH = 255


class InFlight(Exception):
    """A request with this key is still being processed."""

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still in progress; retry later")


class Mismatch(Exception):
    """The key was used with another payload (or another route)."""


@dataclass(frozen=True)
class Stored:
    fingerprint: str | None
    status: int
    body: str
    headers: dict[str, str]


def fingerprint(value: Any) -> str:
    """SHA-256 of a JSON-able payload in canonical form."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def begin(tenant_id: uuid.UUID, key: str, route: str) -> Stored | None:
    """Reserve ``key``; returns the stored response when the key was used before (the caller
    compares fingerprints); raises :class:`InFlight` or :class:`Mismatch`."""
    now = utcnow()
    retention = timedelta(seconds=get_settings().idempotency_seconds)
    with session_scope() as session:
        record = session.get(IdempotencyRecord, (tenant_id, key))
        if record is not None and record.created_at < now - retention:
            session.delete(record)
            session.commit()
            record = None
        if record is not None:
            if record.route != route:
                raise Mismatch(f"this Idempotency-Key was used for another call (the key was used for {record.route})")
            if record.response_status is None:
                if record.created_at >= now - timedelta(seconds=STALE_SECONDS):
                    raise InFlight()
                taken = session.execute(
                    update(IdempotencyRecord)
                    .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key,
                           IdempotencyRecord.created_at == record.created_at)
                    .values(created_at=now)
                ).rowcount
                session.commit()
                if not taken:
                    raise InFlight()
                return None
            return Stored(record.fingerprint, record.response_status, record.response_body or "", record.response_headers or {})
        session.add(IdempotencyRecord(tenant_id=tenant_id, key=key, route=route, created_at=now))
        try:
            session.commit()
        except IntegrityError:  # another request reserved it between our read and insert
            raise InFlight() from None
    return None


def check_payload(stored: Stored, fingerprint: str) -> None:
    """Raise :class:`Mismatch` unless the key's stored response was made for this payload."""
    if stored.fingerprint != fingerprint:
        raise Mismatch("this Idempotency-Key was used with a different payload")


def finish(tenant_id: uuid.UUID, key: str, fingerprint: str, status: int, body: str, headers: dict[str, str]) -> None:
    with session_scope() as session:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
            .values(fingerprint=fingerprint, response_status=status, response_body=body, response_headers=headers)
        )
        session.commit()


def release(tenant_id: uuid.UUID, key: str) -> None:
    with session_scope() as session:
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.response_status.is_(None),
            )
        )
        session.commit()
