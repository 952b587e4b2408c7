"""``Idempotency-Key`` in routes: reserve, replay or store (see :mod:`service.idempotency`)."""

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from api.problems import Problem
from service import idempotency
from service.tenants import Principal

HEADER = "idempotency-key"


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
        key = request.headers.get(HEADER)
        if key is not None:
            key = key.strip().strip('"')
            if not key or len(key) > idempotency.MAX_KEY_LENGTH:
                raise Problem("BAD_REQUEST", f"Idempotency-Key must have 1 to {idempotency.MAX_KEY_LENGTH} characters")
        self = cls(principal, key, route)
        if key is not None:
            try:
                self.stored = await run_in_threadpool(idempotency.begin, principal.tenant_id, key, route)
            except idempotency.InFlight:
                raise Problem("IDEMPOTENCY_IN_FLIGHT", "a request with this Idempotency-Key is still in progress; retry later",
                              headers={"Retry-After": "1"}) from None
            except idempotency.Mismatch as exc:
                raise Problem("IDEMPOTENCY_MISMATCH", f"this Idempotency-Key was used for another call ({exc})") from None
        return self

    def replay(self, fingerprint: str) -> Response | None:
        """The stored response when the key was used with this payload; 422 when with another."""
        self.fingerprint = fingerprint
        if self.stored is None:
            return None
        if self.stored.fingerprint != fingerprint:
            raise Problem("IDEMPOTENCY_MISMATCH", "this Idempotency-Key was used with a different payload")
        headers = {**self.stored.headers, "Idempotent-Replayed": "true"}
        return Response(self.stored.body, status_code=self.stored.status, media_type="application/json", headers=headers)

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
