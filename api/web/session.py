"""Signing in and out of the web page, and the visitor every page serves.

The session cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page
sends it, so no other site can post a form or call the API as the visitor) and Secure when
the page is served over TLS (behind a proxy, run uvicorn with ``--proxy-headers`` so the
scheme is seen). Every form carries the session's CSRF token as well, and the sign-in form,
before any session exists, a token of its own in a short-lived cookie (double submit).
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta
from hmac import compare_digest
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import SESSION_COOKIE, SessionDep, SettingsDep, caller
from api.web.render import CsrfMismatch, PageRoute, SignInRequired, page
from service import web_sessions
from service.tenants import Principal

router = APIRouter(route_class=PageRoute, include_in_schema=False)

#: The sign-in form's own CSRF token (double submit), valid for this many seconds.
SIGN_IN_COOKIE = "forensics_sign_in"
SIGN_IN_SECONDS = 3600


@dataclass(frozen=True)
class Visitor:
    """A signed-in person: their organisation and their session's CSRF token."""

    principal: Principal
    csrf: str


async def get_visitor(request: Request) -> Visitor:
    token = request.cookies.get(SESSION_COOKIE)
    principal, csrf = await run_in_threadpool(caller, None, token) if token else (None, None)
    if principal is None or csrf is None:
        raise SignInRequired
    return Visitor(principal, csrf)


VisitorDep = Annotated[Visitor, Depends(get_visitor)]


def same_token(sent: str | None, expected: str | None) -> bool:
    return bool(sent and expected) and compare_digest(sent.encode(), expected.encode())  # type: ignore[union-attr]


def _local(target: str) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirect through ``next``)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


def _sign_in_form(request: Request, next_page: str, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    csrf = secrets.token_urlsafe(32)
    response = page(request, "sign_in.html", {"csrf": csrf, "next": _local(next_page), "error": error}, status=status)
    response.set_cookie(SIGN_IN_COOKIE, csrf, max_age=SIGN_IN_SECONDS, path="/sign-in", httponly=True,
                        secure=request.url.scheme == "https", samesite="strict")
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, next_page: Annotated[str, Query(alias="next", max_length=2000)] = "/") -> HTMLResponse:
    """The sign-in form."""
    return _sign_in_form(request, next_page)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    api_key: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)],
    next_page: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> Response:
    """Exchange an API key for a session cookie."""
    if not same_token(csrf, request.cookies.get(SIGN_IN_COOKIE)):
        raise CsrfMismatch
    tokens = web_sessions.sign_in(session, api_key, timedelta(hours=settings.session_hours))
    if tokens is None:
        return _sign_in_form(request, next_page, error="That API key is unknown or has been revoked.", status=401)
    response = RedirectResponse(_local(next_page), status_code=303)
    response.set_cookie(SESSION_COOKIE, tokens[0], max_age=round(settings.session_hours * 3600), path="/", httponly=True,
                        secure=request.url.scheme == "https", samesite="strict")
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in", httponly=True, samesite="strict")
    return response


@router.post("/sign-out")
def sign_out(request: Request, session: SessionDep, visitor: VisitorDep, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """End the session (the API key stays valid)."""
    if not same_token(csrf, visitor.csrf):
        raise CsrfMismatch
    web_sessions.sign_out(session, request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=request.url.scheme == "https", samesite="strict")
    return response
