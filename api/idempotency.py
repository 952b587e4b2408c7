"""``Idempotency-Key`` in routes: read the header; reserve, replay or store (see :mod:`service.idempotency`).

:class:`~service.idempotency.InFlight` and :class:`~service.idempotency.Mismatch` become
problems in :mod:`api.problems`.
"""

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from api.problems import Problem
from service import idempotency
from service.tenants import Principal

HEADER = "idempotency-key"


def idempotency_key(request: Request) -> str | None:
    """The request's key (surrounding quotes and spaces removed), None without the header."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip().strip('"')
    if not key or len(key) > idempotency.MAX_KEY_LENGTH:
        raise Problem("BAD_REQUEST", f"Idempotency-Key must have 1 to {idempotency.MAX_KEY_LENGTH} characters")
    return key


def json_answer(status: int, body: str, headers: dict[str, str], *, replayed: bool) -> Response:
    """A creating call's JSON response; one stored for its key and given again says so (``Idempotent-Replayed``)."""
    if replayed:
        headers = {**headers, "Idempotent-Replayed": "true"}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class Idempotent:
    """One creating request's use of its ``Idempotency-Key`` (a no-op without the header)."""

    def __init__(self, principal: Principal, key: str | None, route: str) -> None:
        self.principal = principal
        self.key = key
        self.route = route
        self.stored: idempotency.Stored | None = None
        self.fingerprint = ""
        self._done = False

    @classmethod
    async def start(cls, request: Request, principal: Principal, route: str) -> "Idempotent":
        self = cls(principal, idempotency_key(request), route)
        if self.key is not None:
            self.stored = await run_in_threadpool(idempotency.begin, principal.tenant_id, self.key, route)
        return self

    def replay(self, fingerprint: str) -> Response | None:
        """The stored response when the key was used with this payload; 422 when with another."""
        self.fingerprint = fingerprint
        if self.stored is None:
            return None
        idempotency.check_payload(self.stored, fingerprint)
        return json_answer(self.stored.status, self.stored.body, self.stored.headers, replayed=True)

    async def store(self, response: Response, headers: dict[str, str]) -> Response:
        if self.key is not None and self.stored is None:
            body = bytes(response.body).decode()
            await run_in_threadpool(
                idempotency.finish, self.principal.tenant_id, self.key, self.fingerprint, response.status_code, body, headers
            )
        self._done = True
        return response

    async def close(self) -> None:
        """Release an unfinished reservation (the request failed: the client may retry with the key)."""
        if self.key is not None and self.stored is None and not self._done:
            await run_in_threadpool(idempotency.release, self.principal.tenant_id, self.key)
