"""Tenants and their API keys.

A key reads ``fsk_<8 id chars>_<43 secret chars>`` (``fsk`` = forensics secret key, so a
leaked key is recognisable by scanners); only its SHA-256 is stored. The keys are 256-bit
random, so a fast hash is enough (nothing to brute-force); a slow KDF would cost every
request a few hundred milliseconds for no gain. ``prefix`` (``fsk_<8 id chars>``) is kept
in clear to list and revoke keys.
"""

import base64
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.models import ApiKey, Case, Tenant, utcnow

KEY_KIND = "fsk"
#: Keys supplied from outside (``FORENSICS_API_KEY``) must be at least this long.
MIN_KEY_LENGTH = 24


class TenantError(ValueError):
    """A tenant or key operation is invalid (unknown tenant, duplicate name, ambiguous prefix)."""


@dataclass(frozen=True)
class Principal:
    """The caller of a request: its tenant and the key it used."""

    tenant_id: uuid.UUID
    tenant_name: str
    key_prefix: str
    requests_per_minute: int | None
    images_per_day: int | None
    #: The tenant's default anomaly limits (service.anomalies), read with the key so that creating a
    #: case needs no query of its own before its insert; like the rate limits, a change reaches a
    #: process that has the key cached within KEY_CACHE_SECONDS.
    anomaly_limits: Mapping[str, float] | None


#: The columns a caller is read from, by key (:func:`authenticate`) or by web session
#: (service.web_sessions): the key's prefix and its tenant's settings; see :func:`principal_of`.
PRINCIPAL_COLUMNS = (ApiKey.prefix, Tenant.id, Tenant.name, Tenant.requests_per_minute, Tenant.images_per_day, Tenant.anomaly_limits)


def principal_of(row: Any) -> Principal:
    """The :class:`Principal` of a result row that holds :data:`PRINCIPAL_COLUMNS`."""
    return Principal(row.id, row.name, row.prefix, row.requests_per_minute, row.images_per_day, row.anomaly_limits)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_tenant(session: Session, name: str) -> Tenant:
    name = name.strip()
    if not name:
        raise TenantError("a tenant needs a name")
    if session.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise TenantError(f"a tenant named {name!r} exists already")
    tenant = Tenant(id=uuid.uuid4(), name=name, callback_secret=new_webhook_secret())
    session.add(tenant)
    session.commit()
    return tenant


def find_tenant(session: Session, name_or_id: str) -> Tenant:
    condition = Tenant.name == name_or_id
    try:
        condition = condition | (Tenant.id == uuid.UUID(name_or_id))
    except ValueError:  # not an id: a name only
        pass
    tenant = session.scalar(select(Tenant).where(condition))
    if tenant is None:
        raise TenantError(f"no tenant {name_or_id!r}")
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at)))


def create_key(session: Session, tenant: Tenant, *, name: str | None = None, key: str | None = None) -> str:
    """A new key for ``tenant``; returns the key itself, which is never stored and cannot be shown again."""
    if key is None:
        key = f"{KEY_KIND}_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    elif len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
        raise TenantError(f"an API key must have at least {MIN_KEY_LENGTH} characters and no spaces")
    prefix = key[: len(KEY_KIND) + 9]
    session.add(ApiKey(id=uuid.uuid4(), tenant_id=tenant.id, name=name, prefix=prefix, key_hash=hash_key(key)))
    session.commit()
    return key


def list_keys(session: Session, tenant: Tenant) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.created_at)))


def revoke_key(session: Session, prefix: str) -> ApiKey:
    """Revoke the one active key starting with ``prefix``."""
    matches = list(session.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))))
    if not matches:
        raise TenantError(f"no active key with prefix {prefix!r}")
    if len(matches) > 1:
        raise TenantError(f"{len(matches)} active keys share the prefix {prefix!r}; revoke by a longer prefix")
    matches[0].revoked_at = utcnow()
    session.commit()
    with _known_lock:
        _known.clear()  # this process refuses the key at once; others within KEY_CACHE_SECONDS
    return matches[0]


#: Seconds a found key is trusted before it is looked up again. The lookup was a database
#: round trip on every request; a key revoked by another process is refused within this time.
KEY_CACHE_SECONDS = 5.0
_KEY_CACHE_SIZE = 10_000
_known: dict[str, tuple[float, Principal]] = {}
_known_lock = threading.Lock()
#: One lock per key being looked up: the simultaneous first requests of a key (a client's burst
#: on a fresh API, or when its entry expires) wait for one query instead of each making its own.
_lookups: dict[str, threading.Lock] = {}


def _cached(digest: str) -> Principal | None:
    with _known_lock:
        hit = _known.get(digest)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def authenticate(session: Session, key: str) -> Principal | None:
    """The caller of ``key``, or None when the key is unknown or revoked (unknown keys are never cached)."""
    digest = hash_key(key)
    principal = _cached(digest)
    if principal is not None:
        return principal
    with _known_lock:
        if len(_lookups) >= _KEY_CACHE_SIZE:  # unknown keys are never cached, so their locks are dropped here
            _lookups.clear()
        lookup = _lookups.setdefault(digest, threading.Lock())
    with lookup:
        principal = _cached(digest)
        if principal is not None:
            return principal
        row = session.execute(
            select(*PRINCIPAL_COLUMNS)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
        ).first()
        if row is None:
            return None
        principal = principal_of(row)
        with _known_lock:
            if len(_known) >= _KEY_CACHE_SIZE:
                _known.clear()
            _known[digest] = (time.monotonic() + KEY_CACHE_SECONDS, principal)
    return principal


def adopt_orphan_cases(session: Session, tenant: Tenant) -> int:
    """Give the cases made before tenants existed (no tenant) to ``tenant``; returns how many."""
    adopted = session.execute(update(Case).where(Case.tenant_id.is_(None)).values(tenant_id=tenant.id)).rowcount
    session.commit()
    return adopted


def ensure_first_key(session: Session, key: str | None) -> str | None:
    """Embedded mode's first start: when no tenant exists, create ``default`` with a key
    (``key`` when given, else a new one) and return it; None when tenants exist already."""
    if session.scalar(select(Tenant.id).limit(1)) is not None:
        if key is not None and session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))) is None:
            tenant = session.scalars(select(Tenant).order_by(Tenant.created_at).limit(1)).one()
            return create_key(session, tenant, name="FORENSICS_API_KEY", key=key)
        return None
    tenant = create_tenant(session, "default")
    adopt_orphan_cases(session, tenant)  # an upgraded home keeps its cases
    return create_key(session, tenant, name="first key", key=key)
