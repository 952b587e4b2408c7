"""Errors as ``application/problem+json`` (RFC 9457) carrying the dossier's codes, mapped in one place."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from forensics import ForensicsError
from service import correlation, idempotency
from service.errors import NotFound, Refused
from service.storage import StorageError

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

#: code -> (HTTP status, title)
CODES: dict[str, tuple[int, str]] = {
    "NO_FILE": (400, "No file was uploaded"),
    "EMPTY_FILENAME": (400, "A file part has an empty file name"),
    "INVALID_FORMAT": (415, "Not a supported image format"),
    "VALIDATION_ERROR": (422, "The image is corrupt or cannot be decoded"),
    "FILE_TOO_LARGE": (413, "The upload is too large"),
    "ANALYSIS_ERROR": (422, "The image could not be analysed"),
    "TOO_MANY_FILES": (413, "Too many files in one request"),
    "BAD_REQUEST": (400, "The request is invalid"),
    "NOT_FOUND": (404, "Not found"),
    "METHOD_NOT_ALLOWED": (405, "The method is not allowed here (see Allow)"),
    "UPLOAD_STATE": (409, "The upload slot is not in a state for this"),
    "UNAUTHORIZED": (401, "A valid API key is required"),
    "CSRF_MISMATCH": (403, "The web session's CSRF token is missing or wrong"),
    "RATE_LIMITED": (429, "Too many requests"),
    "QUOTA_EXCEEDED": (429, "The daily image quota is used up"),
    "IDEMPOTENCY_IN_FLIGHT": (409, "A request with this Idempotency-Key is in progress"),
    "IDEMPOTENCY_MISMATCH": (422, "This Idempotency-Key was used with a different payload"),
    "UNSAFE_URL": (400, "The URL is refused (not public http(s))"),
    "UNSAFE_ARCHIVE": (400, "The archive is refused"),
    "FETCH_FAILED": (422, "An image URL could not be fetched"),
    "UPLOAD_MISSING": (400, "An upload slot is unknown, used, expired or empty"),
    "DIRECT_UPLOAD_UNAVAILABLE": (501, "Direct uploads are not available"),
    "NOT_MODIFIED": (304, "Not modified"),
    "UNAVAILABLE": (503, "A dependency of the service is unavailable"),
    "INTERNAL_ERROR": (500, "The service failed"),
}

#: Errors of a dependency that may come back (database, broker, Redis, object storage): 503, not 500.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError, InterfaceError, DisconnectionError, PoolTimeout, BrokerError, RedisConnectionError, RedisTimeoutError,
    StorageError,
)
#: Seconds a client is asked to wait after a 503.
UNAVAILABLE_RETRY_AFTER = 5

#: OpenAPI: the error responses every route may give, as problem+json.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": title, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status, title in ((400, "Bad request"), (401, "No valid API key"), (404, "Not found"), (429, "Rate limited"), (413, "Too large"), (415, "Not an image"),
                          (409, "In progress elsewhere, or not in a state for this"), (422, "Corrupt or not analysable"), (500, "Service failure"),
                          (503, "A dependency is unavailable; retry after Retry-After seconds"))
}


class Problem(Exception):
    """Raise anywhere in a route: becomes a problem+json response with the code's status."""

    def __init__(self, code: str, detail: str, *, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status or CODES.get(code, (400, ""))[0]
        self.headers = headers


def problem_body(code: str, detail: str | None, status: int | None = None) -> dict[str, Any]:
    default_status, title = CODES.get(code, (status or 500, code.replace("_", " ").capitalize()))
    return {
        "type": f"urn:image-forensics:problem:{code.lower().replace('_', '-')}",
        "title": title,
        "status": status or default_status,
        "detail": detail,
        "code": code,
    }


def problem_response(code: str, detail: str, status: int | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = problem_body(code, detail, status)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.code, exc.detail, exc.status, headers=exc.headers)

    @app.exception_handler(ForensicsError)
    async def _forensics(_: Request, exc: ForensicsError) -> JSONResponse:
        return problem_response(exc.code, str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return problem_response("NOT_FOUND", str(exc))

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return problem_response(exc.code, exc.detail, exc.status, headers=headers)

    @app.exception_handler(idempotency.InFlight)
    async def _in_flight(_: Request, exc: idempotency.InFlight) -> JSONResponse:
        return problem_response("IDEMPOTENCY_IN_FLIGHT", str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(idempotency.Mismatch)
    async def _mismatch(_: Request, exc: idempotency.Mismatch) -> JSONResponse:
        return problem_response("IDEMPOTENCY_MISMATCH", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return problem_response("BAD_REQUEST", errors)

    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("a dependency is unavailable: %s: %s", type(exc).__name__, exc)
        return problem_response("UNAVAILABLE", "A service this request needs is unavailable; retry shortly.",
                                headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})

    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        # Starlette answers this one outside the middleware that adds the request id to every response
        request_id = correlation.current().get("request_id")
        headers = {correlation.REQUEST_ID_HEADER: request_id} if request_id else None
        return problem_response("INTERNAL_ERROR", "The service failed; the error was logged.", headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "BAD_REQUEST")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(code, str(exc.detail), exc.status_code, headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method of every route matching the request's path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:  # PARTIAL: the path matches, the method does not
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
