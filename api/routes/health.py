"""Health: the database, the broker and the storage, each checked."""

import time
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.schemas import Check, Health
from service.db import get_engine
from service.queue import get_celery
from service.storage import get_storage

router = APIRouter(tags=["health"])


def _check(probe: Callable[[], object]) -> Check:
    start = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # any failure of a dependency is reported, not raised
        return Check(ok=False, seconds=round(time.perf_counter() - start, 4), detail=f"{type(exc).__name__}: {exc}")
    return Check(ok=True, seconds=round(time.perf_counter() - start, 4))


def _database() -> None:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))


def _broker() -> None:
    with get_celery().connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health() -> JSONResponse:
    """200 when the database, the broker and the storage all answer; 503 naming what failed."""
    checks = {"database": _check(_database), "broker": _check(_broker), "storage": _check(lambda: get_storage().check())}
    ok = all(c.ok for c in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
