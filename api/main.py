"""The FastAPI application: ``uvicorn api.main:app`` (OpenAPI at ``/docs``).

The schema is made by ``alembic upgrade head`` before the API starts (the compose
``migrate`` step, or :func:`api.embedded.serve`), never by the API itself.
"""

from typing import Any

from fastapi import FastAPI

from api.problems import PROBLEM_RESPONSES, install_problem_handlers
from api.routes import cases, health, tools
from api.schemas import Problem as ProblemSchema


def create_app() -> FastAPI:
    app = FastAPI(
        title="Image forensics service",
        version="0.1.0",
        description=(
            "Post a batch of photos, get a case id at once, and read each photo's tamper score, verdict, "
            "findings and heatmaps as they arrive. Errors are application/problem+json with a `code`."
        ),
    )
    install_problem_handlers(app)
    app.include_router(cases.router, responses=PROBLEM_RESPONSES)
    app.include_router(tools.router, responses=PROBLEM_RESPONSES)
    app.include_router(health.router)
    _register_problem_schema(app)
    return app


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
