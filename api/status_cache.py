"""Rendered status bodies of recently polled cases, reused while their fingerprint is unchanged.

Clients poll ``GET /v1/cases/{id}`` every few seconds while a case runs, and most polls find
nothing new. Loading the case with all its images and rendering it costs several
milliseconds of CPU; checking :func:`service.cases.status_fingerprint` costs one small
aggregate query. Each API process keeps the last bodies it rendered, keyed by case and by the
base URL the links were made for, and renders again only when the fingerprint moved.
"""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

#: Cases remembered per API process.
CAPACITY = 4096


@dataclass(frozen=True, slots=True)
class StatusBody:
    fingerprint: tuple[Any, ...]
    body: bytes
    etag: str
    running: bool


def make_body(fingerprint: tuple[Any, ...], body: bytes, *, running: bool) -> StatusBody:
    etag = f'"{hashlib.sha1(body, usedforsecurity=False).hexdigest()[:20]}"'
    return StatusBody(fingerprint, body, etag, running)


class StatusCache:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[UUID, str], StatusBody] = OrderedDict()
        self._lock = threading.Lock()  # routes run in a thread pool

    def get(self, case_id: UUID, base_url: str, fingerprint: tuple[Any, ...]) -> StatusBody | None:
        with self._lock:
            found = self._items.get((case_id, base_url))
            if found is None or found.fingerprint != fingerprint:
                return None
            self._items.move_to_end((case_id, base_url))
            return found

    def put(self, case_id: UUID, base_url: str, status: StatusBody) -> None:
        with self._lock:
            self._items[(case_id, base_url)] = status
            self._items.move_to_end((case_id, base_url))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


status_bodies = StatusCache()
