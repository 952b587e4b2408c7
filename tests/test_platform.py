"""The service against real services: Postgres, Redis, moto's S3 server over HTTP, real Celery workers.

The API runs in process (FastAPI's TestClient); the workers are ``celery worker`` processes
with the same settings in their environment, never eager mode.
"""

import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from forensics.methods import REGISTRY
from tests.conftest import jpeg_bytes
from tests.platform_support import (
    Worker,
    bearer,
    data_file,
    drop_redis_keys,
    environment,
    fetch_url,
    make_tenant,
    moto_s3,
    poll,
    postgres_database,
    service_env,
)

pytestmark = pytest.mark.timeout(600)

PROBLEM = "application/problem+json"
MAX_FILE_BYTES = 2_000_000


@dataclass
class Platform:
    client: TestClient
    env: dict[str, str]
    home: Path
    worker: Worker

    def start_worker(self, name: str) -> Worker:
        self.worker = Worker(self.env, self.home / f"{name}.log", name)
        return self.worker

    def case(self, case_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/cases/{case_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_done(self, case_id: str, timeout: float = 240) -> dict[str, Any]:
        return poll(lambda: self.case(case_id), lambda b: b["status"] in ("completed", "failed"), timeout, "case end")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("platform")
    with postgres_database() as db_url, moto_s3() as endpoint:
        env = service_env(
            db_url,
            endpoint,
            home,
            "test",
            FORENSICS_METHODS="",
            FORENSICS_MAX_FILE_BYTES=str(MAX_FILE_BYTES),
            FORENSICS_METHOD_SOFT_TIME_LIMIT="20",
            FORENSICS_METHOD_TIME_LIMIT="25",
            FORENSICS_VISIBILITY_TIMEOUT="10",
            FORENSICS_REQUEUE_AFTER="15",
        )
        with environment(env):
            from api.main import create_app

            workers = [Worker(env, home / "w1.log", "w1")]
            try:
                with TestClient(create_app(), headers=bearer(make_tenant()[1])) as client:
                    platform = Platform(client, env, home, workers[0])
                    yield platform
                    workers.append(platform.worker)
            finally:
                workers[-1].stop()
                drop_redis_keys(env["FORENSICS_BROKER_KEY_PREFIX"])


def _read(folder: str, name: str) -> bytes:
    return data_file(folder, name).read_bytes()


def _png_magic(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")


def test_batch_completes_with_every_method_and_reports_are_fetchable(platform: Platform) -> None:
    jpg = _read("casia2_samples", "authentic/Au_ani_00001.jpg")
    tif = _read("casia2_samples", "tampered/Tp_D_CRD_S_N_ani00028_ani00058_00148.tif")
    png = _read("comofod_subset", "tampered/005_F.png")
    files = [("images", ("a.jpg", jpg, "image/jpeg")), ("images", ("b.tif", tif, "image/tiff")),
             ("images", ("c.png", png, "image/png")), ("images", ("a-again.jpg", jpg, "image/jpeg"))]
    response = platform.client.post("/v1/cases", files=files, data={"label": "wire batch"})
    assert response.status_code == 202, response.text
    created = response.json()
    assert response.headers["location"].endswith(f"/v1/cases/{created['id']}")
    assert created["label"] == "wire batch" and created["status"] == "queued"
    assert [i["filename"] for i in created["images"]] == ["a.jpg", "b.tif", "c.png", "a-again.jpg"]

    first = platform.client.get(f"/v1/cases/{created['id']}")
    if first.json()["status"] in ("queued", "running"):
        assert first.headers["retry-after"] == "2"
    case = platform.wait_done(created["id"])
    assert case["status"] == "completed"
    assert case["progress"] == {"total": 4, "queued": 0, "running": 0, "completed": 4, "failed": 0}
    # the worker's two pool processes ran these images' methods; each decoded image was shared,
    # not decoded again by the other process (the JPEG is in the case twice: its first fuse may
    # release the share while the copy still runs, so it is not counted)
    log = platform.worker.log.read_text(errors="replace")
    for data in (tif, png):
        assert log.count(f"decoded {hashlib.sha256(data).hexdigest()[:12]} ") == 1, log[-3000:]
    etag = platform.client.get(f"/v1/cases/{created['id']}").headers["etag"]
    not_modified = platform.client.get(f"/v1/cases/{created['id']}", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and "retry-after" not in not_modified.headers

    originals = {"a.jpg": jpg, "b.tif": tif, "c.png": png, "a-again.jpg": jpg}
    for summary in case["images"]:
        assert 0 <= summary["tamper_score"] <= 100 and summary["verdict"]
        report = platform.client.get(summary["url"]).json()
        original = originals[report["file"]]
        assert report["sha256"] == hashlib.sha256(original).hexdigest() == report["image"]["sha256"]
        assert [f["method"] for f in report["findings"]] == list(REGISTRY)
        for finding in report["findings"]:
            assert finding["status"] in ("ok", "not_applicable", "error")
            assert finding["version"] == REGISTRY[finding["method"]].version
            if finding["heatmap_url"]:
                assert _png_magic(fetch_url(platform.client, finding["heatmap_url"]).content)
            for view_url in finding["view_urls"].values():  # pictures for people: JPEG
                assert fetch_url(platform.client, view_url).content.startswith(b"\xff\xd8\xff")
        assert report["findings"][list(REGISTRY).index("enhancement")]["view_urls"], "enhancement views are stored"
        # evidence is stored byte for byte and served back unchanged
        assert fetch_url(platform.client, report["original_url"]).content == original
        if report["heatmap_url"]:
            assert _png_magic(fetch_url(platform.client, report["heatmap_url"]).content)
            assert fetch_url(platform.client, report["overlay_url"]).content.startswith(b"\xff\xd8\xff")

    # the same file twice in a case is stored once, under its SHA-256
    import boto3

    s3 = boto3.client("s3", endpoint_url=platform.env["S3_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    prefix = f"{platform.env['STORAGE_URL'].split('/', 3)[3]}/cases/{created['id']}/originals/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="forensics-test", Prefix=prefix)["Contents"]]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted({hashlib.sha256(b).hexdigest() for b in originals.values()})

    # a worker rendered the closed case's PDF into storage; the API and the dossier serve those bytes
    case_prefix = prefix.removesuffix("originals/")
    for _ in range(300):
        listed = s3.list_objects_v2(Bucket="forensics-test", Prefix=f"{case_prefix}report-").get("Contents", [])
        if listed:
            break
        time.sleep(0.1)
    assert [o["Key"].rsplit("/", 1)[1][:7] for o in listed] == ["report-"], "the worker stored the case's PDF"
    stored_pdf = s3.get_object(Bucket="forensics-test", Key=listed[0]["Key"])["Body"].read()
    assert platform.client.get(f"/v1/cases/{created['id']}/report.pdf").content == stored_pdf
    archive = zipfile.ZipFile(io.BytesIO(platform.client.get(f"/v1/cases/{created['id']}/report.zip").content))
    assert archive.read("report.pdf") == stored_pdf
    names = archive.namelist()
    summary = json.loads(archive.read("batch_summary.json"))
    assert summary["case_id"] == created["id"] and len(summary["images"]) == 4
    for image in summary["images"]:
        report = json.loads(archive.read(f"{image['folder']}/forensic_report.json"))
        assert report["sha256"] == image["sha256"] and len(report["findings"]) == len(REGISTRY)
        for finding in report["findings"]:
            if finding["heatmap_url"]:
                assert f"{image['folder']}/{finding['heatmap_url']}" in names
            for view_name in finding["view_urls"].values():
                assert view_name.endswith(".jpg") and f"{image['folder']}/{view_name}" in names
        if report["overlay_url"]:
            assert report["overlay_url"] == "overlay_fused.jpg" and f"{image['folder']}/overlay_fused.jpg" in names


def test_bad_files_fail_alone_with_their_problem(platform: Platform) -> None:
    good = _read("casia2_samples", "authentic/Au_ani_00002.jpg")
    corrupt = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    text = b"this is not an image, whatever its name says\n"
    oversized = b"\x89PNG\r\n\x1a\n" + bytes(MAX_FILE_BYTES)
    files = [("images", ("good.jpg", good, "image/jpeg")), ("images", ("corrupt.jpg", corrupt, "image/jpeg")),
             ("images", ("notes.jpg", text, "image/jpeg")), ("images", ("huge.png", oversized, "image/png")),
             ("images", ("", good, "image/jpeg"))]
    response = platform.client.post("/v1/cases", files=files)
    assert response.status_code == 202, response.text
    immediate = {i["filename"]: i for i in response.json()["images"]}
    assert immediate["notes.jpg"]["status"] == "failed" and immediate["notes.jpg"]["error"]["code"] == "INVALID_FORMAT"
    assert immediate["huge.png"]["error"]["code"] == "FILE_TOO_LARGE"
    assert immediate[""]["error"]["code"] == "EMPTY_FILENAME"
    case = platform.wait_done(response.json()["id"])
    images = {i["filename"]: i for i in case["images"]}
    assert case["status"] == "completed"
    assert images["good.jpg"]["status"] == "completed" and images["good.jpg"]["tamper_score"] is not None
    assert images["corrupt.jpg"]["status"] == "failed" and images["corrupt.jpg"]["error"]["code"] == "VALIDATION_ERROR"
    assert case["progress"]["completed"] == 1 and case["progress"]["failed"] == 4

    # a request whose only file is refused gets the problem itself
    for files, status, code in [
        ([("images", ("notes.jpg", text, "image/jpeg"))], 415, "INVALID_FORMAT"),
        ([("images", ("huge.png", oversized, "image/png"))], 413, "FILE_TOO_LARGE"),
        ([("images", ("", good, "image/jpeg"))], 400, "EMPTY_FILENAME"),
        ([("other", ("x.jpg", good, "image/jpeg"))], 400, "NO_FILE"),
    ]:
        refused = platform.client.post("/v1/cases", files=files)
        assert refused.status_code == status, refused.text
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["code"] == code and refused.json()["status"] == status
    no_form = platform.client.post("/v1/cases", json={"images": []})
    assert no_form.status_code == 400 and no_form.json()["code"] == "NO_FILE"
    missing = platform.client.get(f"/v1/cases/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM

    # corruption is found by decoding (in the worker): a lone corrupt file fails the case with its reason
    lone = platform.client.post("/v1/cases", files=[("images", ("corrupt.jpg", corrupt, "image/jpeg"))])
    assert lone.status_code == 202
    failed = platform.wait_done(lone.json()["id"])
    assert failed["status"] == "failed" and failed["images"][0]["error"]["code"] == "VALIDATION_ERROR"


def test_case_survives_a_worker_killed_mid_case_without_duplicates(platform: Platform) -> None:
    from sqlalchemy import func, select

    from service.db import session_scope
    from service.models import FINDING_DONE, FindingRow, Image

    names = ["005_F.png", "008_F.png", "010_F.png", "012_F.png", "015_F.png", "018_F.png", "020_F.png", "027_F.png"]
    files = [("images", (n, _read("comofod_subset", f"tampered/{n}"), "image/png")) for n in names]
    case_id = platform.client.post("/v1/cases", files=files).json()["id"]

    def done_findings() -> int:
        with session_scope() as session:
            return session.scalar(
                select(func.count()).select_from(FindingRow).join(Image)
                .where(Image.case_id == uuid.UUID(case_id), FindingRow.status.in_(FINDING_DONE))
            ) or 0

    poll(lambda: {"done": done_findings()}, lambda b: b["done"] >= 1, 120, "first finding")
    platform.worker.kill()
    # partial results are readable while the case runs
    with session_scope() as session:
        first = session.scalar(
            select(FindingRow.image_id).join(Image)
            .where(Image.case_id == uuid.UUID(case_id), FindingRow.status.in_(FINDING_DONE)).limit(1)
        )
    partial = platform.client.get(f"/v1/cases/{case_id}/images/{first}").json()
    assert any(f["status"] in FINDING_DONE for f in partial["findings"])
    assert platform.case(case_id)["status"] in ("queued", "running"), "the case ended before the kill: use more images"
    platform.start_worker("w2")
    case = platform.wait_done(case_id, timeout=300)
    assert case["status"] == "completed" and case["progress"]["completed"] == len(names)
    with session_scope() as session:
        rows = session.execute(
            select(FindingRow.image_id, FindingRow.method, func.count())
            .join(Image).where(Image.case_id == uuid.UUID(case_id))
            .group_by(FindingRow.image_id, FindingRow.method)
        ).all()
        statuses = session.scalars(
            select(FindingRow.status).join(Image).where(Image.case_id == uuid.UUID(case_id))
        ).all()
        attempts = session.scalars(
            select(FindingRow.attempts).join(Image).where(Image.case_id == uuid.UUID(case_id))
        ).all()
    assert len(rows) == len(names) * len(REGISTRY) and all(count == 1 for *_, count in rows)
    assert set(statuses) <= set(FINDING_DONE)
    print(f"findings delivered more than once: {sum(a > 1 for a in attempts)} of {len(attempts)}")


def test_compare_and_metadata_are_synchronous(platform: Platform, astronaut: np.ndarray) -> None:
    first, recompressed = jpeg_bytes(astronaut, 92), jpeg_bytes(astronaut, 60)
    same = platform.client.post("/v1/compare", files={"image_a": ("a.jpg", first), "image_b": ("b.jpg", first)})
    assert same.status_code == 200, same.text
    assert same.json()["identical"] and same.json()["ssim"] == 1.0 and same.json()["phash_distance"] == 0
    resaved = platform.client.post(
        "/v1/compare", files={"image_a": ("a.jpg", first), "image_b": ("b.jpg", recompressed)}
    ).json()
    assert not resaved["identical"] and resaved["same_picture"] and resaved["ssim"] > 0.9
    corrupt = platform.client.post(
        "/v1/compare", files={"image_a": ("a.jpg", first), "image_b": ("b.jpg", first[: len(first) // 3])}
    )
    assert corrupt.status_code == 422 and corrupt.json()["code"] == "VALIDATION_ERROR"

    photo = _read("casia2_samples", "authentic/Au_ani_00001.jpg")
    meta = platform.client.post("/v1/metadata", files={"image": ("photo.jpg", photo, "image/jpeg")})
    assert meta.status_code == 200, meta.text
    assert meta.json()["file"]["sha256"] == hashlib.sha256(photo).hexdigest()
    assert isinstance(meta.json()["metadata"], dict)
    assert platform.client.post("/v1/metadata", files={"other": ("x.jpg", photo)}).json()["code"] == "NO_FILE"


def test_health_checks_each_dependency(platform: Platform) -> None:
    response = platform.client.get("/health")
    assert response.status_code == 200, response.text
    assert {name for name, check in response.json()["checks"].items() if check["ok"]} == {"database", "broker", "storage"}


def test_cases_are_listed_newest_first_with_a_cursor(platform: Platform) -> None:
    first = platform.client.get("/v1/cases", params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    second = platform.client.get("/v1/cases", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    ids = [c["id"] for c in first["data"] + second["data"]]
    assert len(ids) == len(set(ids)) >= 3
    created = [c["created_at"] for c in first["data"] + second["data"]]
    assert created == sorted(created, reverse=True)
    assert platform.client.get("/v1/cases", params={"cursor": "garbage"}).json()["code"] == "BAD_REQUEST"


def test_a_status_poll_reads_on_the_autocommit_engine_only(platform: Platform, astronaut: np.ndarray) -> None:
    """No BEGIN and ROLLBACK around a poll's query: every statement of GET /v1/cases/{id} runs on a
    connection in autocommit, none on the engine whose connections open transactions."""
    from sqlalchemy import event

    from service.db import get_autocommit_engine, get_engine

    created = platform.client.post("/v1/cases", files=[("images", ("a.jpg", jpeg_bytes(astronaut), "image/jpeg"))])
    case_id = created.json()["id"]
    seen: dict[str, list[bool]] = {"autocommit": [], "transactional": []}
    listeners = {
        name: (lambda connection, *_, name=name: seen[name].append(connection.connection.dbapi_connection.autocommit))
        for name in seen
    }
    engines = {"autocommit": get_autocommit_engine(), "transactional": get_engine()}
    for name, engine in engines.items():
        event.listen(engine, "before_cursor_execute", listeners[name])
    try:
        first = platform.client.get(f"/v1/cases/{case_id}")
        again = platform.client.get(f"/v1/cases/{case_id}", headers={"If-None-Match": first.headers["etag"]})
    finally:
        for name, engine in engines.items():
            event.remove(engine, "before_cursor_execute", listeners[name])
    assert first.status_code == 200 and again.status_code == 304
    assert seen["autocommit"] and all(seen["autocommit"]) and seen["transactional"] == [], seen


def test_a_case_creation_writes_its_rows_in_one_transaction_and_reads_nothing(platform: Platform, astronaut: np.ndarray) -> None:
    """With the key known, creating a case queries nothing before its INSERTs (the tenant's defaults
    come with the key), so its one transaction opens only once the originals are stored; then the
    publish is recorded in one autocommit UPDATE."""
    from sqlalchemy import event

    from service.db import get_autocommit_engine, get_engine

    photo = jpeg_bytes(astronaut)
    assert platform.client.post("/v1/cases", files=[("images", ("a.jpg", photo, "image/jpeg"))]).status_code == 202
    seen: dict[str, list[str]] = {"autocommit": [], "transactional": []}
    listeners = {name: (lambda _c, _cur, statement, *_, name=name: seen[name].append(statement.split()[0])) for name in seen}
    engines = {"autocommit": get_autocommit_engine(), "transactional": get_engine()}
    for name, engine in engines.items():
        event.listen(engine, "before_cursor_execute", listeners[name])
    try:
        created = platform.client.post("/v1/cases", files=[("images", ("a.jpg", photo, "image/jpeg"))])
    finally:
        for name, engine in engines.items():
            event.remove(engine, "before_cursor_execute", listeners[name])
    assert created.status_code == 202, created.text
    assert seen == {"transactional": ["INSERT", "INSERT"], "autocommit": ["UPDATE"]}, seen


def test_pinned_pool_processes_each_get_their_own_cpu(platform: Platform) -> None:
    """FORENSICS_WORKER_PIN_CPUS: pool process i runs on the i-th allowed CPU only."""
    cpus = sorted(os.sched_getaffinity(0))
    worker = Worker({**platform.env, "FORENSICS_WORKER_PIN_CPUS": "true"}, platform.home / "pinned.log", "pinned",
                    beat=False, concurrency=len(cpus))
    try:
        def children() -> list[int]:
            found = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == worker.process.pid:
                    found.append(int(stat.parent.name))
            return found

        pool = poll(children, lambda pids: len(pids) >= len(cpus), 30, "pool processes")
        # a pool process pins itself once initialised; wait until each is on a single CPU
        affinities = poll(lambda: [sorted(os.sched_getaffinity(pid)) for pid in pool],
                          lambda sets: all(len(s) == 1 for s in sets), 30, "pinned pool processes")
        assert sorted(s[0] for s in affinities) == cpus
    finally:
        worker.stop()


def test_sensitivity_is_kept_with_the_case_and_used_by_the_deep_scan(platform: Platform) -> None:
    png = _read("comofod_subset", "tampered/005_F.png")
    refused = platform.client.post("/v1/cases", files=[("images", ("c.png", png, "image/png"))], data={"sensitivity": "extreme"})
    assert refused.status_code == 400 and "sensitivity must be one of fast, default, thorough" in refused.json()["detail"]
    response = platform.client.post("/v1/cases", files=[("images", ("c.png", png, "image/png"))], data={"sensitivity": "thorough"})
    assert response.status_code == 202, response.text
    assert response.json()["sensitivity"] == "thorough"
    case = platform.wait_done(response.json()["id"])
    assert case["sensitivity"] == "thorough"
    report = platform.client.get(case["images"][0]["url"]).json()
    deep = next(f for f in report["findings"] if f["method"] == "deep_scan")
    assert deep["status"] == "ok", deep["summary"]
    assert deep["details"]["sensitivity"] == "thorough" and deep["details"]["passes"] == 8
    assert deep["heatmap_url"]
