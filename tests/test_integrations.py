"""Integrations against real services: Postgres, Redis, moto's S3 server over HTTP, a real Celery
worker (with its beat) and a real HTTP receiver on loopback verifying signatures with the
``standardwebhooks`` package. The retry schedule is compressed through the settings."""

import hashlib
import io
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import jpeg_bytes, png_bytes
from tests.integration_support import HOST, Receiver
from tests.platform_support import (
    Worker,
    bearer,
    drop_redis_keys,
    environment,
    make_tenant,
    moto_s3,
    poll,
    postgres_database,
    service_env,
)

pytestmark = pytest.mark.timeout(600)

SCHEDULE = [0.0, 1.0, 1.0, 3.0]  # four attempts: at once, +1 s, +1 s, +3 s
JITTER = 0.1
METHODS = "metadata,integrity"
REFUSED = ["http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/",
           "http://[::1]:9/hook", "http://localhost:9/hook"]


@dataclass
class Integrations:
    client: TestClient
    env: dict[str, str]
    key: str
    tenant_id: uuid.UUID

    def auth(self, key: str | None = None) -> dict[str, str]:
        return bearer(key or self.key)

    def case(self, case_id: str, key: str | None = None) -> dict[str, Any]:
        response = self.client.get(f"/v1/cases/{case_id}", headers=self.auth(key))
        assert response.status_code == 200, response.text
        return response.json()

    def wait_done(self, case_id: str, key: str | None = None, timeout: float = 120) -> dict[str, Any]:
        return poll(lambda: self.case(case_id, key), lambda b: b["status"] in ("completed", "failed"), timeout, "case end")

    def deliveries(self, key: str, **params: str) -> list[dict[str, Any]]:
        response = self.client.get("/v1/webhooks/deliveries", headers=self.auth(key), params=params)
        assert response.status_code == 200, response.text
        return response.json()["data"]


@pytest.fixture(scope="module")
def integ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Integrations]:
    home = tmp_path_factory.mktemp("integrations")
    with postgres_database() as db_url, moto_s3() as endpoint:
        env = service_env(
            db_url,
            endpoint,
            home,
            "integ",
            FORENSICS_METHODS=METHODS,
            FORENSICS_MAX_FILE_BYTES="2000000",
            FORENSICS_WEBHOOK_ALLOWLIST=f"{HOST}/32",
            FORENSICS_WEBHOOK_RETRY_SCHEDULE=",".join(str(s) for s in SCHEDULE),
            FORENSICS_WEBHOOK_JITTER=str(JITTER),
            FORENSICS_WEBHOOK_POLL_INTERVAL="0.3",
            FORENSICS_WEBHOOK_TIMEOUT="3",
            FORENSICS_RATE_LIMIT_PER_MINUTE="0",
            FORENSICS_PUBLIC_BASE_URL="http://forensics.test",
            FORENSICS_MULTIPART_THRESHOLD="1000000",
            FORENSICS_MULTIPART_PART_BYTES="400000",
        )
        with environment(env):
            from api.main import create_app

            worker = Worker(env, home / "worker.log", "integ")
            try:
                tenant_id, key = make_tenant("newsroom-a")
                with TestClient(create_app()) as client:
                    yield Integrations(client, env, key, tenant_id)
            finally:
                worker.stop()
                drop_redis_keys(env["FORENSICS_BROKER_KEY_PREFIX"])


def _image(seed: int, fmt: str = "png", size: int = 48) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return png_bytes(rgb) if fmt == "png" else jpeg_bytes(rgb, 90)


def _failing_case(integ: Integrations) -> str:
    """A case whose only image claims PNG but cannot be decoded: it fails in the worker (case.failed)."""
    corrupt = b"\x89PNG\r\n\x1a\n" + bytes(200)
    created = integ.client.post("/v1/cases", headers=integ.auth(), files=[("images", ("broken.png", corrupt, "image/png"))])
    assert created.status_code == 202, created.text
    assert integ.wait_done(created.json()["id"])["status"] == "failed"
    return created.json()["id"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


# ------------------------------------------------------------------------------- tenants and keys


def test_every_endpoint_but_health_needs_a_valid_key(integ: Integrations) -> None:
    from api.main import app

    any_id = str(uuid.uuid4())
    checked = 0
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/v1/") or path.startswith("/v1/shared/"):
            continue  # a shared original is public until its token expires, by design (tests/test_anomalies.py)
        url = path.replace("{path}", "originals/x")
        for name in ("case_id", "image_id", "endpoint_id", "upload_id", "delivery_id"):
            url = url.replace("{" + name + "}", any_id)
        for method in operations:
            for headers in ({}, bearer("fsk_00000000_unknown-key-unknown-key-unknown")):
                response = integ.client.request(method.upper(), url, headers=headers)
                assert response.status_code == 401, (method, url, response.status_code)
                assert response.headers["www-authenticate"].startswith("Bearer")
                checked += 1
    assert checked >= 28
    assert integ.client.get("/health").status_code == 200


def test_a_tenant_never_sees_another_tenants_cases(integ: Integrations) -> None:
    other_tenant, other = make_tenant("newsroom-b")
    created = integ.client.post("/v1/cases", headers=integ.auth(), files=[("images", ("a.png", _image(1), "image/png"))]).json()
    case = integ.wait_done(created["id"])
    image = case["images"][0]
    report = integ.client.get(image["url"], headers=integ.auth()).json()
    own = {
        "case": f"/v1/cases/{case['id']}",
        "image": f"/v1/cases/{case['id']}/images/{image['id']}",
        "zip": f"/v1/cases/{case['id']}/report.zip",
        "file": f"/v1/cases/{case['id']}/files/originals/{image['sha256']}",
    }
    for name, url in own.items():
        assert integ.client.get(url, headers=integ.auth(other)).status_code == 404, name
        assert integ.client.get(url, headers=integ.auth(other)).json()["code"] == "NOT_FOUND"
    assert integ.client.get(own["image"], headers=integ.auth()).status_code == 200
    assert all(c["id"] != case["id"] for c in integ.client.get("/v1/cases", headers=integ.auth(other)).json()["data"])
    assert report["original_url"]  # presigned: the links themselves are only given to the owner
    # the other tenant's webhook objects and uploads are invisible too
    endpoint = integ.client.post("/v1/webhooks/endpoints", headers=integ.auth(),
                                 json={"url": f"http://{HOST}:9/x", "event_types": ["case.completed"]}).json()
    slot = integ.client.post("/v1/uploads", headers=integ.auth(), json={"files": [{"filename": "a.png", "size": 10}]}).json()
    upload_id = slot["data"][0]["upload_id"]
    assert integ.client.get(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth(other)).status_code == 404
    assert integ.client.delete(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth(other)).status_code == 404
    assert integ.client.put(f"/v1/uploads/{upload_id}", headers=integ.auth(other), content=b"x").status_code == 404
    taken = integ.client.post("/v1/cases", headers=integ.auth(other), json={"upload_ids": [upload_id]})
    assert taken.status_code == 400 and taken.json()["code"] == "UPLOAD_MISSING"
    assert integ.client.delete(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth()).status_code == 204


def test_admin_cli_creates_lists_and_revokes_keys(integ: Integrations, capsys: pytest.CaptureFixture[str]) -> None:
    from service.admin import main

    assert main(["tenant", "create", "wire-desk"]) == 0
    assert main(["key", "create", "wire-desk", "--name", "cms"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("fsk_") and len(key) > 40
    assert integ.client.get("/v1/cases", headers=integ.auth(key)).status_code == 200
    assert main(["key", "list", "wire-desk"]) == 0
    listing = capsys.readouterr().out
    assert key[:12] in listing and key not in listing  # only the prefix is ever shown again
    assert main(["key", "revoke", key[:12]]) == 0
    assert integ.client.get("/v1/cases", headers=integ.auth(key)).status_code == 401
    assert main(["key", "revoke", key[:12]]) == 1
    assert main(["tenant", "create", "wire-desk"]) == 1
    capsys.readouterr()
    assert main(["tenant", "adopt", "wire-desk"]) == 0
    assert capsys.readouterr().out.strip() == "0 cases adopted"  # every case here was made with a tenant


def test_a_burst_of_a_keys_first_requests_looks_the_key_up_once(integ: Integrations) -> None:
    import threading

    from sqlalchemy import event

    from service import tenants
    from service.db import get_engine, session_scope

    lookups: list[str] = []

    def count(_conn, _cursor, statement: str, *_args: object) -> None:  # type: ignore[no-untyped-def]
        if "api_keys" in statement:
            lookups.append(statement)

    start = threading.Barrier(16)
    found: list[object] = []

    def request(key: str) -> None:
        with session_scope() as session:
            start.wait()
            found.append(tenants.authenticate(session, key))

    tenants._known.clear()  # as on a fresh API, or when the key's entry expires
    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        threads = [threading.Thread(target=request, args=(integ.key,)) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(found) == 16 and {getattr(p, "tenant_id", None) for p in found} == {integ.tenant_id}
        assert len(lookups) == 1
        start.reset()
        threads = [threading.Thread(target=request, args=(integ.key + "x",)) for _ in range(16)]  # unknown: never cached
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert found[16:] == [None] * 16
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)


def test_admin_cli_sets_a_tenants_anomaly_defaults_which_new_cases_take(integ: Integrations, capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import select

    from service.admin import main
    from service.db import session_scope
    from service.models import Case

    assert main(["tenant", "create", "photo-desk"]) == 0
    assert main(["key", "create", "photo-desk"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["tenant", "anomaly-limits", "photo-desk", "--max-distance-km", "5", "--max-age-days", "400"]) == 0
    assert capsys.readouterr().out.splitlines() == ["max_time_spread_hours\t72", "max_distance_km\t5", "max_age_days\t400"]
    assert main(["tenant", "anomaly-limits", "photo-desk", "--max-age-days", "-1"]) == 1
    assert "max_age_days must be a positive number" in capsys.readouterr().err
    created = integ.client.post(
        "/v1/cases", headers=integ.auth(key), files=[("images", ("a.jpg", _image(7, "jpg"), "image/jpeg"))], data={"anomaly_max_age_days": "9"}
    )
    assert created.status_code == 202, created.text
    with session_scope() as session:
        limits = session.scalar(select(Case.anomaly_limits).where(Case.id == uuid.UUID(created.json()["id"])))
    assert limits == {"max_time_spread_hours": 72.0, "max_distance_km": 5.0, "max_age_days": 9.0}
    assert main(["tenant", "anomaly-limits", "photo-desk", "--clear"]) == 0
    assert capsys.readouterr().out.splitlines() == ["max_time_spread_hours\t72", "max_distance_km\t50", "max_age_days\t30"]


# ------------------------------------------------------------------------------- webhooks


def test_events_are_signed_thin_and_sent_to_endpoints_and_callback(integ: Integrations, receiver: Receiver) -> None:
    created_endpoint = integ.client.post(
        "/v1/webhooks/endpoints", headers=integ.auth(),
        json={"url": receiver.url("/endpoint"), "event_types": ["case.completed", "image.completed"]},
    )
    assert created_endpoint.status_code == 201, created_endpoint.text
    endpoint = created_endpoint.json()
    assert endpoint["secret"].startswith("whsec_")
    receiver.secrets["/endpoint"] = endpoint["secret"]
    receiver.secrets["/callback"] = integ.client.get("/v1/webhooks/callback-secret", headers=integ.auth()).json()["secret"]
    files = [("images", ("a.png", _image(2), "image/png")), ("images", ("b.jpg", _image(3, "jpeg"), "image/jpeg"))]
    created = integ.client.post("/v1/cases", headers=integ.auth(), files=files, data={"callback_url": receiver.url("/callback")})
    case_id = created.json()["id"]
    integ.wait_done(case_id)
    poll(lambda: {"n": len(receiver.received)}, lambda b: b["n"] >= 4, 30, "four webhooks")
    time.sleep(1.0)
    callback, at_endpoint = receiver.at("/callback"), receiver.at("/endpoint")
    assert [r.payload["type"] for r in callback] == ["case.completed"]  # type: ignore[index]
    assert sorted(r.payload["type"] for r in at_endpoint) == ["case.completed", "image.completed", "image.completed"]  # type: ignore[index]
    assert all(r.verified for r in receiver.received)
    event = callback[0].payload
    assert event is not None and event["data"]["case_id"] == case_id
    assert event["data"]["links"]["case"] == f"http://forensics.test/v1/cases/{case_id}"
    assert "images" in event["data"] and "findings" not in str(event)  # thin: counts and links only
    log = integ.deliveries(integ.key, case_id=case_id)
    assert len(log) == 4 and all(d["status"] == "delivered" and d["attempts"] == 1 for d in log)
    assert {d["id"] for d in log} == {r.webhook_id for r in receiver.received}
    assert integ.client.delete(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth()).status_code == 204


def test_receiver_down_for_all_but_the_last_attempt_gets_the_event_with_the_same_id(integ: Integrations) -> None:
    receiver = Receiver()  # its port is chosen, nothing listens yet
    secret = integ.client.get("/v1/webhooks/callback-secret", headers=integ.auth()).json()["secret"]
    receiver.secrets["/late"] = secret
    created = integ.client.post("/v1/cases", headers=integ.auth(), files=[("images", ("a.png", _image(4), "image/png"))],
                                data={"callback_url": receiver.url("/late")})
    case_id = created.json()["id"]
    integ.wait_done(case_id)
    failing = poll(lambda: integ.deliveries(integ.key, case_id=case_id)[0], lambda d: d["attempts"] == len(SCHEDULE) - 1, 30,
                   "every attempt but the last failed")
    assert failing["status"] == "pending" and "ConnectError" in failing["last_error"]
    receiver.start()
    try:
        done = poll(lambda: integ.deliveries(integ.key, case_id=case_id)[0], lambda d: d["status"] in ("delivered", "failed"), 30, "last attempt")
    finally:
        receiver.stop()
    assert done["status"] == "delivered" and done["attempts"] == len(SCHEDULE)
    assert [r.webhook_id for r in receiver.received] == [done["id"]] and receiver.received[0].verified
    assert [a["status_code"] for a in done["attempt_log"]] == [None] * (len(SCHEDULE) - 1) + [200]


def test_failing_receiver_is_retried_on_the_schedule_then_failed_and_can_be_redelivered(integ: Integrations, receiver: Receiver) -> None:
    endpoint = integ.client.post("/v1/webhooks/endpoints", headers=integ.auth(),
                                 json={"url": receiver.url("/busy"), "event_types": ["case.failed"]}).json()
    receiver.secrets["/busy"] = endpoint["secret"]
    receiver.plan("/busy", (503, {"Retry-After": "2"}), (500, {}), (302, {"Location": receiver.url("/elsewhere")}), (500, {}))
    case_id = _failing_case(integ)
    def mine() -> list[dict[str, Any]]:
        return [d for d in integ.deliveries(integ.key, case_id=case_id) if d["endpoint_id"] == endpoint["id"]]

    done = poll(mine, lambda d: d and d[0]["status"] == "failed", 40, "failed")[0]
    attempts = receiver.at("/busy")
    assert len(attempts) == len(SCHEDULE) == done["attempts"]
    assert {a.webhook_id for a in attempts} == {done["id"]} and all(a.verified for a in attempts)
    gaps = np.diff([a.at for a in attempts])
    assert gaps[0] >= 2.0 - 0.05  # Retry-After: 2 beats the schedule's 1 s
    for gap, delay in zip(gaps[1:], SCHEDULE[2:], strict=True):
        assert gap >= delay * (1 - JITTER) - 0.05, (gaps, SCHEDULE)
    assert [a["status_code"] for a in done["attempt_log"]] == [503, 500, 302, 500]  # a redirect is a failure, not followed
    assert not receiver.at("/elsewhere")
    receiver.plan("/busy", (204, {}))
    again = integ.client.post(f"/v1/webhooks/deliveries/{done['id']}/redeliver", headers=integ.auth())
    assert again.status_code == 202
    redelivered = poll(lambda: integ.client.get(f"/v1/webhooks/deliveries/{done['id']}", headers=integ.auth()).json(),
                       lambda d: d["status"] == "delivered", 20, "redelivered")
    assert receiver.at("/busy")[-1].webhook_id == done["id"] and redelivered["attempts"] == 1
    assert integ.client.delete(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth()).status_code == 204


def test_410_gone_disables_the_endpoint(integ: Integrations, receiver: Receiver) -> None:
    endpoint = integ.client.post("/v1/webhooks/endpoints", headers=integ.auth(),
                                 json={"url": receiver.url("/gone"), "event_types": ["case.failed"]}).json()
    receiver.plan("/gone", (410, {}))
    case_id = _failing_case(integ)
    got = poll(lambda: integ.client.get(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth()).json(),
               lambda e: not e["enabled"], 20, "endpoint disabled")
    assert "410" in got["disabled_reason"] and len(receiver.at("/gone")) == 1
    enabled = integ.client.patch(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth(), json={"enabled": True})
    assert enabled.json()["enabled"] and enabled.json()["disabled_reason"] is None
    moved = integ.client.patch(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth(), json={"url": "http://10.0.0.1/"})
    assert moved.status_code == 400 and moved.json()["code"] == "UNSAFE_URL"
    log = [d for d in integ.deliveries(integ.key, case_id=case_id) if d["endpoint_id"] == endpoint["id"]]
    assert len(log) == 1 and log[0]["status"] == "failed" and log[0]["attempts"] == 1
    assert integ.client.delete(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=integ.auth()).status_code == 204


# ------------------------------------------------------------------------------- SSRF


@pytest.mark.parametrize("url", REFUSED)
def test_refused_addresses_are_refused_at_registration(integ: Integrations, url: str) -> None:
    endpoint = integ.client.post("/v1/webhooks/endpoints", headers=integ.auth(), json={"url": url, "event_types": ["case.completed"]})
    assert endpoint.status_code == 400 and endpoint.json()["code"] == "UNSAFE_URL"
    case = integ.client.post("/v1/cases", headers=integ.auth(), files=[("images", ("a.png", _image(5), "image/png"))],
                             data={"callback_url": url})
    assert case.status_code == 400 and case.json()["code"] == "UNSAFE_URL"
    ingest = integ.client.post("/v1/cases", headers=integ.auth(), json={"urls": [url.replace("hook", "a.png")]})
    assert ingest.status_code == 400 and ingest.json()["code"] == "UNSAFE_URL"


def test_delivery_rechecks_the_address_and_never_connects_to_a_refused_one(integ: Integrations, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from service import analysis, cases
    from service.db import session_scope
    from service.models import WebhookDelivery, utcnow
    from service.storage import get_storage
    from service.webhooks.delivery import deliver
    from service.webhooks.outbox import new_message_id

    connects: list[Any] = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: connects.append(addr) or real_connect(self, addr))
    ids = []
    # rows as if the addresses had been accepted at registration, then changed; claimed_at says their
    # message is already on its way, so the worker's dispatcher leaves them to this test's own attempts
    with session_scope() as session:
        for url in REFUSED:
            delivery = WebhookDelivery(id=new_message_id(), tenant_id=integ.tenant_id, url=url, event_type="case.completed",
                                       payload={"type": "case.completed"}, status="pending", attempts=0, next_attempt_at=utcnow(),
                                       claimed_at=utcnow())
            session.add(delivery)
            ids.append(delivery.id)
        session.commit()
    assert [deliver(delivery_id) for delivery_id in ids] == ["pending"] * len(ids)
    assert not [a for a in connects if a[0] not in ("127.0.0.1",) or a[1] in (9, 80)]  # only the database's own connections
    with session_scope() as session:
        for delivery_id in ids:
            row = session.get_one(WebhookDelivery, delivery_id)
            assert row.attempts == 1 and row.last_error.startswith("refused:") and row.last_status_code is None
    # image URLs are checked again when the worker fetches them (here: rows made without the API's check)
    intakes = [cases.Intake("a.png", None, 0, None, source_url=url.replace("hook", "a.png")) for url in REFUSED]
    with session_scope() as session:
        case, queued = cases.create_case(session, get_storage(), tenant_id=integ.tenant_id, label=None, callback_url=None, intakes=intakes)
    for image_id in queued:
        analysis.prepare_image(image_id)
    assert not [a for a in connects if a[0] not in ("127.0.0.1",) or a[1] in (9, 80)]
    final = integ.case(str(case.id))
    assert final["status"] == "failed" and {i["error"]["code"] for i in final["images"]} == {"UNSAFE_URL"}


# ------------------------------------------------------------------------------- idempotency, limits


def test_idempotency_key_replays_refuses_other_payloads_and_in_flight(integ: Integrations) -> None:
    from service import idempotency

    files = [("images", ("a.png", _image(6), "image/png"))]
    headers = {**integ.auth(), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = integ.client.post("/v1/cases", headers=headers, files=files)
    again = integ.client.post("/v1/cases", headers=headers, files=files)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    other = integ.client.post("/v1/cases", headers=headers, files=[("images", ("a.png", _image(7), "image/png"))])
    assert other.status_code == 422 and other.json()["code"] == "IDEMPOTENCY_MISMATCH"
    ids = [c["id"] for c in integ.client.get("/v1/cases", headers=integ.auth(), params={"limit": 100}).json()["data"]]
    assert ids.count(first.json()["id"]) == 1
    busy_key = f"k-{uuid.uuid4()}"
    assert idempotency.begin(integ.tenant_id, busy_key, "POST /v1/cases") is None  # a first request still running
    in_flight = integ.client.post("/v1/cases", headers={**integ.auth(), "Idempotency-Key": busy_key}, files=files)
    assert in_flight.status_code == 409 and in_flight.json()["code"] == "IDEMPOTENCY_IN_FLIGHT"
    # a request that fails releases its key
    bad_key = {**integ.auth(), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    assert integ.client.post("/v1/cases", headers=bad_key, json={"urls": ["http://10.0.0.1/a.png"]}).status_code == 400
    assert integ.client.post("/v1/cases", headers=bad_key, files=files).status_code == 202


def test_rate_limit_answers_429_with_headers(integ: Integrations) -> None:
    from service.db import session_scope
    from service.models import Tenant

    tenant_id, key = make_tenant()
    with session_scope() as session:
        session.get_one(Tenant, tenant_id).requests_per_minute = 3
        session.commit()
    answers = [integ.client.get("/v1/cases", headers=integ.auth(key)) for _ in range(4)]
    if answers[-1].status_code != 429:  # the minute turned between two requests: once more
        answers = [integ.client.get("/v1/cases", headers=integ.auth(key)) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
    limited = answers[3]
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["retry-after"]) <= 60 and limited.headers["ratelimit-limit"] == "3"


def test_daily_image_quota_refuses_a_case_that_would_exceed_it(integ: Integrations) -> None:
    from service.db import session_scope
    from service.models import Tenant

    tenant_id, key = make_tenant()
    with session_scope() as session:
        session.get_one(Tenant, tenant_id).images_per_day = 3
        session.commit()

    def post(*seeds: int) -> httpx.Response:
        files = [("images", (f"{s}.png", _image(s), "image/png")) for s in seeds]
        return integ.client.post("/v1/cases", headers=integ.auth(key), files=files)

    assert post(50, 51).status_code == 202
    over = post(52, 53)
    assert over.status_code == 429 and over.json()["code"] == "QUOTA_EXCEEDED" and int(over.headers["retry-after"]) > 0
    assert post(54).status_code == 202  # the refused request used none of the quota
    assert post(55).status_code == 429


# ------------------------------------------------------------------------------- large batches


def test_presigned_upload_flow_against_s3(integ: Integrations) -> None:
    images = [_image(100 + i, "jpeg" if i % 2 else "png") for i in range(12)]
    files = [{"filename": f"p{i}.img", "size": len(data)} for i, data in enumerate(images)]
    files += [{"filename": "notes.jpg", "size": 100}, {"filename": "big.png", "size": 50}, {"filename": "never.png", "size": 10}]
    response = integ.client.post("/v1/uploads", headers=integ.auth(), json={"files": files})
    assert response.status_code == 201, response.text
    slots = response.json()["data"]
    assert all(s["method"] == "POST" and s["url"].startswith(integ.env["S3_ENDPOINT_URL"]) for s in slots)
    bodies = [*images, b"just some text, named like a photo", _image(999)]  # the last upload exceeds its slot
    for slot, data in zip(slots, bodies, strict=False):
        sent = httpx.post(slot["url"], data=slot["fields"], files={"file": (slot["filename"], data)}, timeout=10)
        assert sent.status_code in (200, 201, 204), sent.text
    ids = [s["upload_id"] for s in slots]
    created = integ.client.post("/v1/cases", headers=integ.auth(), json={"upload_ids": ids, "label": "presigned"})
    assert created.status_code == 202, created.text
    case = integ.wait_done(created.json()["id"])
    by_name = {i["filename"]: i for i in case["images"]}
    assert case["status"] == "completed" and case["progress"]["completed"] == 12
    assert [by_name[f"p{i}.img"]["sha256"] for i in range(12)] == [hashlib.sha256(d).hexdigest() for d in images]
    assert by_name["notes.jpg"]["error"]["code"] == "INVALID_FORMAT"  # judged by content, not by name
    assert by_name["big.png"]["error"]["code"] == "FILE_TOO_LARGE"
    assert by_name["never.png"]["error"]["code"] == "UPLOAD_MISSING"
    report = integ.client.get(by_name["p0.img"]["url"], headers=integ.auth()).json()
    assert httpx.get(report["original_url"], timeout=10).content == images[0]
    reused = integ.client.post("/v1/cases", headers=integ.auth(), json={"upload_ids": ids[:1]})
    assert reused.status_code == 400 and reused.json()["code"] == "UPLOAD_MISSING"  # a slot is used once


def test_big_files_get_presigned_multipart_slots(integ: Integrations, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1024)  # S3's 5 MiB minimum part, scaled down with the test
    big = _image(40, size=720)
    assert 1_000_000 < len(big) < 2_000_000
    slots = integ.client.post("/v1/uploads", headers=integ.auth(), json={"files": [{"filename": "big.png", "size": len(big)}]})
    slot = slots.json()["data"][0]
    assert slot["method"] == "MULTIPART" and [p["size"] for p in slot["parts"]] == [400000] * 3 + [len(big) - 1_200_000]
    early = integ.client.post("/v1/cases", headers=integ.auth(), json={"upload_ids": [slot["upload_id"]]})
    assert early.status_code == 400 and "not completed" in early.json()["detail"]
    done = []
    offset = 0
    for part in slot["parts"]:
        answer = httpx.put(part["url"], content=big[offset : offset + part["size"]], timeout=10)
        assert answer.status_code == 200, answer.text
        done.append({"part_number": part["part_number"], "etag": answer.headers["etag"]})
        offset += part["size"]
    completed = integ.client.post(slot["complete_url"], headers=integ.auth(), json={"parts": done})
    assert completed.status_code == 204, completed.text
    created = integ.client.post("/v1/cases", headers=integ.auth(), json={"upload_ids": [slot["upload_id"]]})
    case = integ.wait_done(created.json()["id"])
    assert case["status"] == "completed" and case["images"][0]["sha256"] == hashlib.sha256(big).hexdigest()


def test_zip_archive_is_expanded_and_bombs_and_path_tricks_are_refused(integ: Integrations) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("folder/one.png", _image(20))
        zf.writestr("two.jpg", _image(21, "jpeg"))
        zf.writestr("readme.jpg", "not an image")
        zf.writestr("empty-folder/", "")
    created = integ.client.post("/v1/cases", headers=integ.auth(), files=[("archive", ("batch.zip", archive.getvalue(), "application/zip"))])
    assert created.status_code == 202, created.text
    case = integ.wait_done(created.json()["id"])
    assert [(i["filename"], i["status"]) for i in case["images"]] == [("one.png", "completed"), ("two.jpg", "completed"), ("readme.jpg", "failed")]
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(1_900_000))
    assert len(bomb.getvalue()) < 10_000
    refused = integ.client.post("/v1/cases", headers=integ.auth(), files=[("archive", ("bomb.zip", bomb.getvalue(), "application/zip"))])
    assert refused.status_code == 400 and refused.json()["code"] == "UNSAFE_ARCHIVE" and "bomb" in refused.json()["detail"]
    for name in ("../../etc/cron.d/x.png", "/abs/x.png", "C:\\win\\x.png"):
        tricky = io.BytesIO()
        with zipfile.ZipFile(tricky, "w") as zf:
            zf.writestr(zipfile.ZipInfo(name), _image(22))
        answer = integ.client.post("/v1/cases", headers=integ.auth(), files=[("archive", ("t.zip", tricky.getvalue(), "application/zip"))])
        assert answer.status_code == 400 and answer.json()["code"] == "UNSAFE_ARCHIVE", name


def test_url_ingestion_fetches_with_limits_and_no_redirects(integ: Integrations, receiver: Receiver) -> None:
    receiver.files["/files/a.png"] = png = _image(30)
    receiver.files["/files/b.jpg"] = _image(31, "jpeg")
    receiver.files["/files/big.png"] = b"\x89PNG\r\n\x1a\n" + bytes(2_100_000)
    receiver.files["/files/text.png"] = b"hello"
    urls = [receiver.url(p) for p in ("/files/a.png", "/files/b.jpg", "/files/big.png", "/files/text.png", "/redirect", "/files/404.png")]
    created = integ.client.post("/v1/cases", headers=integ.auth(), json={"urls": urls})
    assert created.status_code == 202, created.text
    case = integ.wait_done(created.json()["id"])
    codes = [(i["status"], (i["error"] or {}).get("code")) for i in case["images"]]
    assert codes == [("completed", None), ("completed", None), ("failed", "FETCH_FAILED"), ("failed", "INVALID_FORMAT"),
                     ("failed", "FETCH_FAILED"), ("failed", "FETCH_FAILED")]
    assert case["images"][0]["sha256"] == hashlib.sha256(png).hexdigest()
    assert "redirects are not followed" in case["images"][4]["error"]["detail"]


# ------------------------------------------------------------------------------- text Postgres cannot store


def test_control_characters_and_long_names_never_reach_postgres_as_a_500(integ: Integrations) -> None:
    """NUL in a file name, a ZIP entry, a label, a webhook description or a path parameter, and names
    over 500 characters: file names are stored in a safe form, typed texts are refused with 400."""
    long_name = "x" * 600 + ".png"
    files = [("images", ("evil\x00name.png", _image(40), "image/png")), ("images", (long_name, _image(41), "image/png")),
             ("images", ("gpj\u202e.exe.png", _image(42), "image/png"))]
    body = b"".join(  # by hand: httpx would percent-encode the NUL, as a careful client does
        b"--b0undary\r\nContent-Disposition: form-data; name=\"images\"; filename=\"" + name.encode() + b"\"\r\n"
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n" for _, (name, data, _) in files
    ) + b"--b0undary--\r\n"
    created = integ.client.post("/v1/cases", headers={**integ.auth(), "Content-Type": "multipart/form-data; boundary=b0undary"},
                                content=body)
    assert created.status_code == 202, created.text
    names = [i["filename"] for i in created.json()["images"]]
    assert names[0] == "evil\ufffdname.png" and "\x00" not in "".join(names)
    assert len(names[1]) == 255 and names[1].endswith("\u2026.png") and names[2] == "gpj\ufffd.exe.png"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("y" * 700 + ".png", _image(43))
    zipped = integ.client.post("/v1/cases", headers=integ.auth(), files=[("archive", ("long.zip", archive.getvalue(), "application/zip"))])
    assert zipped.status_code == 202 and len(zipped.json()["images"][0]["filename"]) == 255
    refusals = [
        integ.client.post("/v1/cases", headers=integ.auth(), files=files[:1], data={"label": "night\x00desk"}),
        integ.client.post("/v1/cases", headers=integ.auth(), json={"urls": ["https://example.org/a.png"], "label": "a\x00b"}),
        integ.client.post("/v1/webhooks/endpoints", headers=integ.auth(),
                          json={"url": "https://example.org/hook", "event_types": ["case.completed"], "description": "d\x00"}),
        integ.client.get("/v1/webhooks/deliveries/msg_%00abc", headers=integ.auth()),
    ]
    for response in refusals:
        assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST", response.text
    assert "U+0000" in refusals[0].json()["detail"]
    missing = integ.client.get(f"/v1/cases/{created.json()['id']}/files/originals/a%00b", headers=integ.auth())
    assert missing.status_code == 404
