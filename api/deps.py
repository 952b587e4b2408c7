"""Dependencies as ``Annotated`` aliases: the caller (tenant), the database session, settings, storage, URL making."""

from collections.abc import AsyncIterator
from hmac import compare_digest
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.problems import Problem
from service import ratelimit, web_sessions
from service.db import get_autocommit_engine, get_sessionmaker
from service.reports import Link
from service.settings import Settings, get_settings
from service.storage import Storage, get_storage
from service.tenants import Principal, authenticate

#: Request state key under which the rate-limit headers wait for the response (see api.main).
RATE_HEADERS = "rate_limit_headers"
#: The web page's session cookie (see service.web_sessions) and the header its scripts echo the CSRF token in.
SESSION_COOKIE = "forensics_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


async def settings_dependency() -> Settings:
    """The process's settings. Async on purpose, like the session: FastAPI runs a plain ``def``
    dependency in its thread pool, and two hops per request to read cached objects cost about an
    eighth of the API's CPU in a burst of case creations."""
    return get_settings()


async def storage_dependency() -> Storage:
    """The process's storage client (built at start-up), without a thread hop (see above)."""
    return get_storage()


SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SettingsDep = Annotated[Settings, Depends(settings_dependency)]
StorageDep = Annotated[Storage, Depends(storage_dependency)]


async def get_linker(request: Request, storage: StorageDep) -> Link:
    """Storage key -> URL for the client: presigned (S3) or served by this API (local folder).
    Making the function does no I/O, so it needs no thread hop either."""

    def link(key: str) -> str | None:
        url = storage.presigned_url(key)
        if url is not None:
            return url
        _, case_id, path = key.split("/", 2)
        return str(request.url_for("get_case_file", case_id=case_id, path=path))

    return link


LinkDep = Annotated[Link, Depends(get_linker)]


def caller(key: str | None, cookie: str | None) -> tuple[Principal | None, str | None]:
    """The tenant of an API key, or else of a web session cookie with that session's CSRF token.
    Each is one read, so it runs on the autocommit engine, like a status poll's query (no
    ``BEGIN`` and ``ROLLBACK`` round trips when a key's cached entry has expired)."""
    with get_sessionmaker()(bind=get_autocommit_engine()) as session:
        if key is not None:
            return authenticate(session, key), None
        if cookie:
            return web_sessions.signed_in(session, cookie) or (None, None)
    return None, None


def _authenticate_and_count(
    key: str | None, cookie: str | None, settings: Settings
) -> tuple[Principal | None, str | None, ratelimit.Decision | None]:
    principal, csrf = caller(key, cookie)
    if principal is None:
        return None, None, None
    limit = settings.rate_limit_per_minute if principal.requests_per_minute is None else principal.requests_per_minute
    return principal, csrf, ratelimit.hit_request(principal.tenant_id, limit)


async def get_principal(request: Request, settings: SettingsDep) -> Principal:
    """The tenant of the ``Authorization: Bearer`` key, or of the web page's session cookie (then a
    state-changing request must echo the session's CSRF token in ``X-CSRF-Token``); 401 without a
    valid credential, 403 without the CSRF token, 429 over the rate limit."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    cookie = request.cookies.get(SESSION_COOKIE)
    if key is None and not cookie:
        raise Problem("UNAUTHORIZED", "send an API key as 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    principal, csrf, decision = await run_in_threadpool(_authenticate_and_count, key, cookie, settings)
    if principal is None:
        detail = "the API key is unknown or revoked" if key is not None else "the web session has ended; sign in again"
        raise Problem("UNAUTHORIZED", detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if csrf is not None and request.method not in SAFE_METHODS and not compare_digest(request.headers.get(CSRF_HEADER, "").encode(), csrf.encode()):
        raise Problem("CSRF_MISMATCH", f"a request made with the web session must carry its CSRF token in {CSRF_HEADER}")
    if decision is not None and decision.limit:
        request.state.rate_limit_headers = decision.headers()
        if not decision.allowed:
            raise Problem("RATE_LIMITED", f"more than {decision.limit} requests per minute", headers=decision.headers())
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
