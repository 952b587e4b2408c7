"""Database engine and sessions (SQLAlchemy 2.0), and migrating the schema with Alembic.

Alembic is the only way the schema is made, tests included: :func:`migrate` runs
``alembic upgrade head`` on the configured database.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from service.settings import get_settings

REPO = Path(__file__).resolve().parents[1]


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets the API read while a worker process writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for a task: closed at the end; the caller commits where its steps end.

    The session holds one connection from start to end, so a task that commits three times
    checks a connection out of the pool (and pings it) once, not at every commit; between
    transactions the connection is idle, never idle in a transaction.
    """
    with get_engine().connect() as connection, get_sessionmaker()(bind=connection) as session:
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
