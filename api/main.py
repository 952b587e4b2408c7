"""The FastAPI application: ``uvicorn api.main:app`` (OpenAPI at ``/docs``).

The schema is made by ``alembic upgrade head`` before the API starts (the compose
``migrate`` step, or :func:`api.embedded.serve`), never by the API itself.
"""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import RATE_HEADERS
from api.observability import RequestObservability, bind_path_ids
from api.problems import PROBLEM_RESPONSES, install_problem_handlers
from api.routes import cases, duplicates, health, metrics, shared, tools, uploads, webhooks
from api.schemas import Problem as ProblemSchema
from api.web.site import install as install_web_page
from service.warmup import warm_up


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await run_in_threadpool(warm_up)
    # What start-up made (modules, the engine's tables and models, the clients) lives as long as the
    # process: frozen, the collector stops walking it on every full collection, which a burst of
    # first requests triggers (about 3 ms of the event loop per request of such a burst).
    gc.collect()
    gc.freeze()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        title="Image forensics service",
        version="0.1.0",
        description=(
            "Post a batch of photos, get a case id at once, and read each photo's tamper score, verdict, "
            "findings and heatmaps as they arrive. Errors are application/problem+json with a `code`."
        ),
        dependencies=[Depends(bind_path_ids)],
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(RequestObservability)  # the outermost: it times and labels everything inside
    app.include_router(cases.router, responses=PROBLEM_RESPONSES)
    app.include_router(uploads.router, responses=PROBLEM_RESPONSES)
    app.include_router(webhooks.router, responses=PROBLEM_RESPONSES)
    app.include_router(tools.router, responses=PROBLEM_RESPONSES)
    app.include_router(duplicates.router, responses=PROBLEM_RESPONSES)
    app.include_router(shared.router, responses=PROBLEM_RESPONSES)
    app.include_router(health.router)
    app.include_router(metrics.router)
    install_web_page(app)
    _register_problem_schema(app)
    return app


class RateLimitHeaders:
    """Adds the ``RateLimit-*`` headers the authentication dependency left in the request state to the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = scope.get("state", {}).get(RATE_HEADERS)
                if extra:
                    headers = MutableHeaders(scope=message)
                    for name, value in extra.items():
                        if name not in headers:
                            headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _register_problem_schema(app: FastAPI) -> None:
    """Put the problem+json schema in OpenAPI's components, where the error responses refer to it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = ProblemSchema.model_json_schema()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


app = create_app()
