"""The web page's sessions on a real Postgres database: what the cookie is, what CSRF refuses,
and what ends a session (signing out, revoking the key, expiry); and that every problem the
API can answer has plain words on the page. The browser journeys are in tests/test_web.py;
these are the rules a browser does not show."""

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from service import web_sessions
from tests.platform_support import api_app, make_tenant


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with api_app(tmp_path_factory.mktemp("web-sessions")) as app:
        yield app


def _sign_in(client: TestClient, key: str, next_page: str = "/") -> object:
    form = client.get("/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    return client.post("/sign-in", data={"api_key": key, "csrf": csrf, "next": next_page}, follow_redirects=False)


def _page_csrf(client: TestClient) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)  # type: ignore[union-attr]


def test_the_cookie_is_http_only_strict_and_secure_over_tls(app: object) -> None:
    _, key = make_tenant()
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        with TestClient(app, base_url=base) as client:  # type: ignore[arg-type]
            response = _sign_in(client, key)
            assert response.status_code == 303 and response.headers["location"] == "/"
            cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("forensics_session="))
            attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
            assert {"httponly", "samesite", "path", "max-age"} <= attributes and "samesite=strict" in cookie.lower()
            assert ("secure" in attributes) is secure
            assert key not in cookie
            page = client.get("/")
            assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
            assert "unsafe-inline" not in page.headers["content-security-policy"]


def test_forms_and_state_changing_calls_need_the_csrf_token(app: object) -> None:
    _, key = make_tenant()
    with TestClient(app) as client:  # type: ignore[arg-type]
        # a sign-in form posted from elsewhere carries no matching sign-in cookie
        refused = client.post("/sign-in", data={"api_key": key, "csrf": "forged", "next": "/"}, follow_redirects=False)
        assert refused.status_code == 403 and "forensics_session" not in client.cookies
        # ``next`` leads only within the site
        assert _sign_in(client, key, "//evil.example/").headers["location"] == "/"
        csrf = _page_csrf(client)
        slots = {"files": [{"filename": "a.jpg", "size": 10}]}
        assert client.post("/v1/uploads", json=slots).status_code == 403
        assert client.post("/v1/uploads", json=slots, headers={"X-CSRF-Token": "x" + csrf}).status_code == 403
        assert client.post("/v1/uploads", json=slots, headers={"X-CSRF-Token": csrf}).status_code == 201
        assert client.get("/v1/cases").status_code == 200  # reading needs no token
        assert client.post("/sign-out", data={}, follow_redirects=False).status_code == 403
        assert client.get("/", follow_redirects=False).status_code == 200  # still signed in
        out = client.post("/sign-out", data={"csrf": csrf}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/sign-in"


def test_signing_out_revoking_the_key_and_expiry_end_a_session(app: object) -> None:
    from service.db import session_scope
    from service.tenants import revoke_key

    _, key = make_tenant()
    with TestClient(app) as client:  # type: ignore[arg-type]
        _sign_in(client, key)
        token = client.cookies["forensics_session"]
        client.post("/sign-out", data={"csrf": _page_csrf(client)})
        client.cookies.set("forensics_session", token)  # a copy of the cookie kept from before
        assert client.get("/", follow_redirects=False).headers["location"] == "/sign-in?next=%2F"
        assert client.get("/v1/cases").status_code == 401
        assert client.get("/v1/cases", headers={"Authorization": f"Bearer {key}"}).status_code == 200  # the key is not revoked

        _sign_in(client, key)
        assert client.get("/v1/cases").status_code == 200
        with session_scope() as session:
            revoke_key(session, key[:12])
        assert client.get("/v1/cases").status_code == 401
        assert client.get("/", follow_redirects=False).status_code == 303

    _, key = make_tenant()
    with session_scope() as session:
        token, _ = web_sessions.sign_in(session, key, timedelta(seconds=-1)) or ("", "")
        assert token and web_sessions.signed_in(session, token) is None
        assert web_sessions.sign_in(session, "fsk_unknown_key_0000000000000000", timedelta(hours=1)) is None


def test_every_problem_code_has_plain_words_on_the_page() -> None:
    from api.problems import CODES
    from api.web.words import PROBLEMS

    assert set(CODES) - {"NOT_MODIFIED"} <= set(PROBLEMS)
