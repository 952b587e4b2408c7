"""Pages as responses: the templates, the security headers every page carries, and errors as pages.

Autoescaping is on for every template whatever its name, so a file name or an EXIF string
holding markup is shown as text. The Content-Security-Policy allows scripts and styles only
from this origin's static files: an injected ``<script>`` or ``onerror`` attribute would not
run even if some text escaped escaping.
"""

from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import ChainableUndefined, Environment, FileSystemLoader

from api.web import words
from forensics import ForensicsError
from service.errors import NotFound
from service.storage import ObjectNotFound

HERE = Path(__file__).parent
STATIC = HERE / "static"

templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=ChainableUndefined, trim_blocks=True,
                    lstrip_blocks=True)
)
templates.env.filters.update(words.FILTERS)
templates.env.globals["PROBLEM_WORDS"] = words.PROBLEMS


class SignInRequired(Exception):
    """The request has no valid session: the page answers with the sign-in form's address."""


class CsrfMismatch(Exception):
    """A form came back without the session's CSRF token (another site's form, or a stale page)."""


def security_headers(connect_src: Iterable[str] = ()) -> dict[str, str]:
    """Headers of every page: scripts, styles and images from this origin only (images also as
    ``data:`` and ``blob:`` URLs the scripts make), requests to this origin and ``connect_src``
    (the storage a direct upload goes to), no framing, no caching of a tenant's data."""
    connect = " ".join(["'self'", *connect_src])
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"connect-src {connect}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def page(request: Request, name: str, context: dict[str, Any], *, status: int = 200, connect_src: Iterable[str] = ()) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, {"visitor": None, **context}, status_code=status)
    response.headers.update(security_headers(connect_src))
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error said in plain words, with a way back."""
    return page(request, "error.html", {"status": status, "message": message}, status=status)


class PageRoute(APIRoute):
    """A page's errors are pages: a case that is missing or another tenant's is a 404 page, a
    malformed id too, and no session leads to the sign-in form; never problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)
            except CsrfMismatch:
                return error_page(request, 403, "This form is out of date or came from another site. Reload the page and try again.")
            except (NotFound, ObjectNotFound):
                return error_page(request, 404, "There is nothing here: the case or image does not exist, or belongs to another organisation.")
            except RequestValidationError as exc:
                if any(error["loc"][0] == "path" for error in exc.errors()):
                    return error_page(request, 404, "There is nothing here: that address does not name a case or image.")
                return error_page(request, 400, "The address has a value the page does not understand: " + words.validation(exc))
            except ForensicsError as exc:
                return error_page(request, 422, f"{words.problem(exc.code)} ({exc})")

        return route
