"""Database engine and sessions (SQLAlchemy 2.0), and migrating the schema with Alembic.

Alembic is the only way the schema is made, tests included: :func:`migrate` runs
``alembic upgrade head`` on the configured database.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from service.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
#: libpq's timeouts: a connection attempt gives up after 10 s, and TCP keepalives end a
#: connection whose peer vanished (a partition, a host gone without closing its sockets) within
#: about a minute, instead of leaving a request waiting on it for ever.
POSTGRES_CONNECT_ARGS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def make_engine(url: str, *, autocommit: bool = False) -> Engine:
    """An engine for ``url``; with ``autocommit`` its connections commit every statement as it
    ends (set once per connection, so the pool never resets it)."""
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets the API read while a worker process writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=POSTGRES_CONNECT_ARGS, **options)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache
def get_autocommit_engine() -> Engine:
    """A second engine, with a pool of its own, for :func:`session_scope` ``(autocommit=True)``
    and the API's requests that only read."""
    return make_engine(get_settings().database_url, autocommit=True)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(*, autocommit: bool = False) -> Iterator[Session]:
    """A session for a task: closed at the end; the caller commits where its steps end.

    The session holds one connection from start to end, so a task that commits three times
    checks a connection out of the pool (and pings it) once, not at every commit; between
    transactions the connection is idle, never idle in a transaction.

    With ``autocommit`` the connection comes from the autocommit engine: every statement is a
    transaction of its own, committed by the database as it ends, with no ``BEGIN`` and
    ``COMMIT`` round trips (six of a method task's eleven). Only for callers whose every
    transaction is a single statement; their ``commit()`` calls then only close the ORM's
    bookkeeping. The engine is a separate one because switching a pooled connection's
    isolation level costs a ``SET`` round trip each time it returns to the pool.
    """
    engine = get_autocommit_engine() if autocommit else get_engine()
    with engine.connect() as connection, get_sessionmaker()(bind=connection) as session:
        yield session


def alembic_config(url: str | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.attributes["configure_logger"] = False  # called from a running program: leave its logging alone
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str | None = None) -> None:
    """``alembic upgrade head`` on ``url`` (default: the configured ``DATABASE_URL``)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
