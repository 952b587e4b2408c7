"""Dependencies as ``Annotated`` aliases: the caller (tenant), the database session, settings, storage, URL making."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.problems import Problem
from service import ratelimit
from service.db import get_autocommit_engine, get_sessionmaker
from service.reports import Link
from service.settings import Settings, get_settings
from service.storage import Storage, get_storage
from service.tenants import Principal, authenticate

#: Request state key under which the rate-limit headers wait for the response (see api.main).
RATE_HEADERS = "rate_limit_headers"


async def get_session() -> AsyncIterator[Session]:
    """A session per request. Async on purpose: opening a Session does no I/O (it connects on first
    use, inside the sync route's thread), so the dependency needs no thread hop of its own; closing
    only returns the connection to the pool."""
    with get_sessionmaker()() as session:
        yield session


async def get_read_session() -> AsyncIterator[Session]:
    """A session for a request that only reads, on the autocommit engine: each query is a
    transaction of its own, as under READ COMMITTED it has its own snapshot anyway, so a status
    poll's query costs no ``BEGIN`` and ``ROLLBACK`` round trips (two of its four)."""
    with get_sessionmaker()(bind=get_autocommit_engine()) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]


def get_linker(request: Request, storage: StorageDep) -> Link:
    """Storage key -> URL for the client: presigned (S3) or served by this API (local folder)."""

    def link(key: str) -> str | None:
        url = storage.presigned_url(key)
        if url is not None:
            return url
        _, case_id, path = key.split("/", 2)
        return str(request.url_for("get_case_file", case_id=case_id, path=path))

    return link


LinkDep = Annotated[Link, Depends(get_linker)]


def _authenticate_and_count(token: str, settings: Settings) -> tuple[Principal | None, ratelimit.Decision | None]:
    with get_sessionmaker()() as session:
        principal = authenticate(session, token)
    if principal is None:
        return None, None
    limit = settings.rate_limit_per_minute if principal.requests_per_minute is None else principal.requests_per_minute
    return principal, ratelimit.hit_request(principal.tenant_id, limit)


async def get_principal(request: Request, settings: SettingsDep) -> Principal:
    """The tenant of the ``Authorization: Bearer`` key; 401 without a valid key, 429 over the rate limit."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem("UNAUTHORIZED", "send an API key as 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    principal, decision = await run_in_threadpool(_authenticate_and_count, token.strip(), settings)
    if principal is None:
        raise Problem("UNAUTHORIZED", "the API key is unknown or revoked", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if decision is not None and decision.limit:
        request.state.rate_limit_headers = decision.headers()
        if not decision.allowed:
            raise Problem("RATE_LIMITED", f"more than {decision.limit} requests per minute", headers=decision.headers())
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
