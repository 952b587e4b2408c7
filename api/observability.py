"""Every request's correlation id, its count and its latency; the ids of its path in its log lines."""

import time
import uuid

from fastapi import Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import correlation
from service.metrics import HTTP_REQUESTS, HTTP_SECONDS

#: Methods labelled as themselves; any other a client invents is ``OTHER`` (one series, not one each).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestObservability:
    """Gives each request an id (the client's ``X-Request-ID`` when it is short and printable,
    else a new one), returns it on the response, and counts the request by route template and
    status with its duration.

    The id is bound in the request's own context and not unbound: uvicorn runs each request
    in a task of its own, and a response to an unhandled error is made outside every
    middleware (Starlette's ``ServerErrorMiddleware``), where the problem handler still
    needs to read it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(correlation.REQUEST_ID_HEADER)
        request_id = given if correlation.valid_request_id(given) else correlation.new_request_id()
        correlation.bind(request_id=request_id)
        start = time.perf_counter()
        status = 500  # unless a response starts: an unhandled error is answered 500 outside

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[correlation.REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # the template (/v1/cases/{case_id}), never the path: one series per route, not per case
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - start)


async def bind_path_ids(request: Request) -> None:
    """Binds the ``case_id`` and ``image_id`` of the path, when they are ids, for the request's
    log lines and the tasks it sends. Async: a binding made in a thread would not reach the route."""
    ids = {}
    for name in ("case_id", "image_id"):
        value = request.path_params.get(name)
        try:
            ids[name] = uuid.UUID(value) if value else None
        except ValueError:
            continue
    correlation.bind(**ids)
