"""Metrics and logs against real services: a uvicorn API with two processes and a Celery worker
on its own metrics folder and port (as on another machine), Postgres, Redis and moto's S3.

A case is processed for real; then the API's ``/metrics`` (every API process merged, the
state read from the database and the broker) and the worker's own ``/metrics`` (its pool
processes merged) are parsed with ``prometheus_client.parser``, and the JSON log lines of
the API and of the worker are followed by the request's id.
"""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import queue
from service.metrics import ServiceCollector
from tests.conftest import jpeg_bytes
from tests.integration_support import HOST, Receiver
from tests.platform_support import (
    REDIS_URL,
    ApiServer,
    Worker,
    bearer,
    drop_redis_keys,
    environment,
    free_port,
    make_tenant,
    moto_s3,
    poll,
    postgres_database,
    service_env,
)

pytestmark = pytest.mark.timeout(300)

TOKEN = "metrics-test-token-5f2c"
METHODS = ["metadata", "ela", "noise"]
REQUEST_ID = "abc-123"


@dataclass
class Service:
    api: ApiServer
    api_log: Path
    worker: Worker
    worker_metrics: str
    key: str
    receiver: Receiver


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("observability")
    api_metrics, worker_metrics = home / "api-metrics", home / "worker-metrics"
    api_metrics.mkdir()  # the API's folder is emptied by whoever starts the API: here, this test
    worker_port = free_port()
    receiver = Receiver().start()
    with postgres_database() as db_url, moto_s3() as endpoint:
        env = service_env(
            db_url, endpoint, home, "observability",
            FORENSICS_METHODS=",".join(METHODS),
            FORENSICS_LOG_FORMAT="json",
            FORENSICS_METRICS_TOKEN=TOKEN,
            FORENSICS_WEBHOOK_ALLOWLIST=f"{HOST}/32",
        )
        with environment(env):
            key = make_tenant()[1]
            api_log = home / "api.log"
            api = ApiServer({**env, "PROMETHEUS_MULTIPROC_DIR": str(api_metrics)}, api_log, workers=2, log_config=True)
            worker = None
            try:
                worker = Worker(
                    {**env, "PROMETHEUS_MULTIPROC_DIR": str(worker_metrics), "FORENSICS_WORKER_METRICS_PORT": str(worker_port)},
                    home / "worker.log", "observability",
                )
                yield Service(api, api_log, worker, f"http://127.0.0.1:{worker_port}/metrics", key, receiver)
            finally:
                if worker is not None:
                    worker.stop()
                api.stop()
                drop_redis_keys(env["FORENSICS_BROKER_KEY_PREFIX"])


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON lines (a worker's start banner is printed as text before logging starts)."""
    return [json.loads(line) for line in path.read_text(errors="replace").splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def processed_case(service: Service, astronaut: np.ndarray) -> dict[str, Any]:
    """One case sent with ``X-Request-ID: abc-123`` and a callback, processed by the worker; the
    number of successful polls is kept for the request counter."""
    base, auth = service.api.base, bearer(service.key)
    service.receiver.secrets["/hook"] = httpx.get(f"{base}/v1/webhooks/callback-secret", headers=auth).json()["secret"]
    created = httpx.post(
        f"{base}/v1/cases", headers={**auth, "X-Request-ID": REQUEST_ID},
        files=[("images", ("astronaut.jpg", jpeg_bytes(astronaut), "image/jpeg"))], data={"callback_url": service.receiver.url("/hook")},
    )
    assert created.status_code == 202, created.text
    assert created.headers["x-request-id"] == REQUEST_ID
    polls = 0

    def fetch() -> dict[str, Any]:
        nonlocal polls
        response = httpx.get(f"{base}/v1/cases/{created.json()['id']}", headers=auth)  # a new connection each: any API process
        assert response.status_code == 200, response.text
        polls += 1
        return response.json()

    case = poll(fetch, lambda body: body["status"] in ("completed", "failed"), 180, "case end")
    assert case["status"] == "completed", case
    poll(lambda: service.receiver.at("/hook"), bool, 60, "the case.completed webhook")
    return {"case": case, "polls": polls}


def test_request_ids_are_taken_when_valid_and_returned_on_every_response(service: Service) -> None:
    base = service.api.base
    assert httpx.get(f"{base}/health", headers={"X-Request-ID": "trace:42/a=b"}).headers["x-request-id"] == "trace:42/a=b"
    for invalid in ("has spaces", "x" * 129, ""):
        response = httpx.get(f"{base}/health", headers={"X-Request-ID": invalid})
        made = response.headers["x-request-id"]
        assert made != invalid and len(made) == 32 and int(made, 16) >= 0
    assert httpx.get(f"{base}/health").headers["x-request-id"] != httpx.get(f"{base}/health").headers["x-request-id"]
    refused = httpx.get(f"{base}/v1/cases", headers={"X-Request-ID": "error-1"})  # a problem response carries it too
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "error-1"


def test_metrics_are_refused_without_the_token(service: Service) -> None:
    url = f"{service.api.base}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, bearer(service.key)):
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHORIZED", refused.text
        assert "forensics_" not in refused.text
    served = httpx.get(url, headers=bearer(TOKEN))
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/plain")


def test_api_metrics_count_requests_by_route_and_read_the_state(service: Service, processed_case: dict[str, Any]) -> None:
    # paths and methods a client invents share one series each
    assert httpx.get(f"{service.api.base}/nowhere/{uuid.uuid4()}").status_code == 404
    assert httpx.request("PROPFIND", f"{service.api.base}/elsewhere").status_code == 404
    samples = _samples(httpx.get(f"{service.api.base}/metrics", headers=bearer(TOKEN)).text)
    assert _value(samples, "forensics_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert _value(samples, "forensics_http_requests_total", method="OTHER", route="unmatched", status="404") == 1
    assert _value(samples, "forensics_http_requests_total", method="POST", route="/v1/cases", status="202") == 1
    # the polls went to both uvicorn processes; the scrape sums them
    polls = _value(samples, "forensics_http_requests_total", method="GET", route="/v1/cases/{case_id}", status="200")
    assert polls == processed_case["polls"]
    assert _value(samples, "forensics_http_request_duration_seconds_count", method="POST", route="/v1/cases") == 1
    assert (_value(samples, "forensics_http_request_duration_seconds_sum", method="POST", route="/v1/cases") or 0) > 0
    assert not any(name == "forensics_http_requests_total" and ("route", f"/v1/cases/{processed_case['case']['id']}") in labels
                   for name, labels in samples), "a route is labelled by its template, never by its path"
    # the state, read at scrape time: nothing left in flight, every queue counted
    assert _value(samples, "forensics_cases_in_flight", status="running") == 0
    assert {dict(labels)["status"] for name, labels in samples if name == "forensics_images_in_flight"} == {"queued", "running", "fusing"}
    depths = {dict(labels)["queue"]: value for (name, labels), value in samples.items() if name == "forensics_queue_depth"}
    assert set(depths) == {"control", "webhooks", "reports", "analysis", "intake"} and all(v >= 0 for v in depths.values())


def test_worker_metrics_count_tasks_methods_webhooks_and_repairs(service: Service, processed_case: dict[str, Any]) -> None:
    samples = _samples(httpx.get(service.worker_metrics, timeout=10).text)
    for task, at_least in (("forensics.prepare_image", 1), ("forensics.run_method", len(METHODS)), ("forensics.fuse_image", 1)):
        assert (_value(samples, "forensics_tasks_total", task=task, outcome="success") or 0) >= at_least, task
        assert (_value(samples, "forensics_task_duration_seconds_count", task=task, outcome="success") or 0) >= at_least, task
        assert (_value(samples, "forensics_task_duration_seconds_sum", task=task, outcome="success") or 0) > 0, task
    for method in METHODS:
        counted = sum(v for (name, labels), v in samples.items()
                      if name == "forensics_method_seconds_count" and dict(labels)["method"] == method)
        assert counted >= 1, method
    assert (_value(samples, "forensics_webhook_attempts_total", event_type="case.completed", result="delivered") or 0) >= 1
    def repair_kinds() -> set[str]:
        scraped = _samples(httpx.get(service.worker_metrics, timeout=10).text)
        return {dict(labels)["kind"] for name, labels in scraped if name == "forensics_reconciler_repairs_total"}

    # the beat's first pass may come after the case completed: wait for it (every 2 s here)
    repairs = poll(repair_kinds, lambda kinds: "requeued_methods" in kinds, 30, "a reconciler pass")
    assert "closed_cases" in repairs, "the beat's reconciler ran and counted every kind"
    assert _value(samples, "forensics_tasks_running", task="forensics.run_method") == 0


def test_logs_are_json_lines_that_follow_the_request_into_the_tasks(service: Service, processed_case: dict[str, Any]) -> None:
    case = processed_case["case"]
    image_id = case["images"][0]["id"]
    # the API: every line is JSON; the access line of the creation carries its id
    api_lines = [line for line in service.api_log.read_text().splitlines() if line.strip()]
    assert api_lines and all(line.startswith("{") for line in api_lines), api_lines[:5]
    created = [e for e in _json_lines(service.api_log) if e.get("request_id") == REQUEST_ID]
    assert any("POST /v1/cases" in e["message"] for e in created), created
    # the worker: the lines of this case's tasks carry the request id, the case and the image
    worker_log = service.worker.log
    assert all(line.startswith("{") for line in worker_log.read_text().splitlines() if REQUEST_ID in line)
    ours = [e for e in _json_lines(worker_log) if e.get("request_id") == REQUEST_ID]
    for task in ("forensics.prepare_image", "forensics.run_method", "forensics.fuse_image"):
        done = [e for e in ours if f"Task {task}[" in e["message"] and "succeeded" in e["message"]]
        assert done, f"no line of {task} with the request id"
        assert all(e["case_id"] == case["id"] and e["image_id"] == image_id for e in done)
    for method in METHODS:
        assert any(e["message"].startswith(f"{method} of image {image_id}") for e in ours), method
    # and no line of another request's task carries it
    assert all(e.get("image_id") in (None, image_id) for e in ours)


@pytest.mark.parametrize("broker", ["redis", "filesystem"])
def test_queue_depth_counts_waiting_messages_per_queue(broker: str, tmp_path: Path) -> None:
    """Redis: the lengths of the prefixed lists; the embedded mode: the filesystem transport's message files."""
    prefix = f"forensics-depth-{uuid.uuid4().hex[:8]}:"
    settings = {"BROKER_URL": REDIS_URL, "FORENSICS_BROKER_KEY_PREFIX": prefix} if broker == "redis" else {"BROKER_URL": "filesystem://"}
    with environment({"FORENSICS_HOME": str(tmp_path), **settings}):
        try:
            queue.enqueue_prepare([uuid.uuid4() for _ in range(3)])
            queue.enqueue_fuse([uuid.uuid4()])
            family = ServiceCollector._queue_depth()
            assert {s.labels["queue"]: s.value for s in family.samples} == {"control": 0, "webhooks": 0, "reports": 0, "analysis": 1, "intake": 3}
        finally:
            if broker == "redis":
                drop_redis_keys(prefix)
