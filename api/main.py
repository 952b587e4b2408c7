"""The FastAPI application: ``uvicorn api.main:app`` (OpenAPI at ``/docs``).

The schema is made by ``alembic upgrade head`` before the API starts (the compose
``migrate`` step, or :func:`api.embedded.serve`), never by the API itself.
"""

from fastapi import FastAPI

from api.problems import install_problem_handlers
from api.routes import cases, health, tools


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
    app.include_router(cases.router)
    app.include_router(tools.router)
    app.include_router(health.router)
    return app


app = create_app()
