"""service.models: time stamps read back as aware UTC datetimes on SQLite (embedded mode) and Postgres alike."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from service.models import Base, Tenant
from tests.platform_support import postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        yield engine
    else:
        with postgres_database() as url:
            engine = create_engine(url)
            with engine.begin() as connection:  # the session's zone must not leak into what is read back
                connection.exec_driver_sql("ALTER DATABASE " + url.rsplit("/", 1)[1] + " SET timezone TO 'America/New_York'")
            yield engine
    engine.dispose()


@pytest.mark.parametrize(
    "written",
    [datetime(2026, 3, 1, 12, 30, tzinfo=UTC), datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))), datetime(2026, 3, 1, 12, 30)],
    ids=["utc", "plus-two", "naive-taken-as-utc"],
)
def test_time_stamps_read_back_as_aware_utc(engine: Engine, written: datetime) -> None:
    tenant_id = uuid.uuid4()
    with Session(engine) as session:
        session.add(Tenant(id=tenant_id, name=f"t-{tenant_id}", callback_secret="whsec_x", created_at=written))
        session.commit()
    with Session(engine) as session:
        read = session.scalar(select(Tenant.created_at).where(Tenant.id == tenant_id))
        assert read == datetime(2026, 3, 1, 12, 30, tzinfo=UTC) and read.tzinfo is UTC
        # a comparison in SQL binds through the same type: an aware bound value in another zone matches too
        assert session.scalar(select(Tenant.id).where(Tenant.created_at == datetime(2026, 3, 1, 7, 30, tzinfo=timezone(timedelta(hours=-5)))))
