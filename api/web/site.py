"""The web page as part of the API application: its routers and its static files."""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.web import pages, pictures, session
from api.web.render import STATIC


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` (sign-in, cases, case, image, compare) and its scripts under ``/static``."""
    for router in (session.router, pages.router, pictures.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
