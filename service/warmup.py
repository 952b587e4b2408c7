"""Build a process's clients before its first request or task, not during it.

The database engines, the storage client (boto3's takes a few hundred milliseconds of CPU to
build), the Celery app with its broker connection and the rate-limit counter are made lazily
and cached per process. Made on demand, the first burst of requests after a start builds them
concurrently, once per thread that misses the cache: 50 simultaneous case creations on a fresh
API waited about 5 s where later ones wait well under one. Building them once at start-up,
and opening one connection of each pool, moves that cost out of every request.
"""

import logging

from sqlalchemy import text

from service import ratelimit
from service.db import get_autocommit_engine, get_engine, get_sessionmaker
from service.queue import get_celery
from service.settings import get_settings
from service.storage import get_storage

logger = logging.getLogger(__name__)


def warm_up() -> None:
    """Make the cached clients and open one connection each; a dependency that is down is only logged
    (requests that need it answer 503 until it is back)."""
    get_settings()
    get_sessionmaker()
    get_storage()
    ratelimit.get_counter()
    for engine in (get_engine(), get_autocommit_engine()):
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - start anyway; /health reports it
            logger.warning("the database is not reachable at start-up: %s", exc)
    celery = get_celery()
    celery.backend  # noqa: B018 - built on first use (imports, a scan of entry points), then shared by every thread
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        logger.warning("the broker is not reachable at start-up: %s", exc)
