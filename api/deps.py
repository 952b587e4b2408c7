"""Dependencies as ``Annotated`` aliases: the database session, settings, storage, URL making."""

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.db import get_sessionmaker
from service.settings import Settings, get_settings
from service.storage import Storage, get_storage


async def get_session() -> AsyncIterator[Session]:
    """A session per request. Async on purpose: opening a Session does no I/O (it connects on first
    use, inside the sync route's thread), so the dependency needs no thread hop of its own; closing
    only returns the connection to the pool."""
    with get_sessionmaker()() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]

Link = Callable[[str], str | None]


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
