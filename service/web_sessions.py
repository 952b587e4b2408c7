"""Web page sessions: an API key exchanged once for a server-side session.

The browser keeps only a random token in an HttpOnly cookie, never the key, so script on a
page cannot read a credential, and signing out ends the session at once for every process
(the row is revoked; nothing is cached). The row stores the token's SHA-256, as keys are
stored, and a CSRF token the page echoes in every form and state-changing request. A
session is valid while it is neither revoked nor expired *and its key is not revoked*.
"""

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.models import ApiKey, Tenant, WebSession, utcnow
from service.tenants import PRINCIPAL_COLUMNS, Principal, hash_key, principal_of


def sign_in(session: Session, key: str, lifetime: timedelta) -> tuple[str, str] | None:
    """A new session for the active API key ``key``: (cookie token, CSRF token); None for an
    unknown or revoked key. Sessions expired by then are deleted on the way."""
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key.strip()), ApiKey.revoked_at.is_(None)))
    if api_key is None:
        return None
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(WebSession(id=uuid.uuid4(), token_hash=hash_key(token), api_key_id=api_key.id, csrf_token=csrf,
                           created_at=now, expires_at=now + lifetime))
    session.commit()
    return token, csrf


def signed_in(session: Session, token: str) -> tuple[Principal, str] | None:
    """The caller of a session cookie and the session's CSRF token; None when the session is
    unknown, revoked or expired, or its key is revoked."""
    row = session.execute(
        select(*PRINCIPAL_COLUMNS, WebSession.csrf_token)
        .join(ApiKey, ApiKey.id == WebSession.api_key_id)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(
            WebSession.token_hash == hash_key(token),
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > utcnow(),
            ApiKey.revoked_at.is_(None),
        )
    ).first()
    if row is None:
        return None
    return principal_of(row), row.csrf_token


def sign_out(session: Session, token: str) -> None:
    """Revoke the session of ``token`` (the key stays valid); nothing happens for an unknown one."""
    session.execute(
        update(WebSession).where(WebSession.token_hash == hash_key(token), WebSession.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    session.commit()
