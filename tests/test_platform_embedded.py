"""Embedded mode end to end: ``api.embedded.serve`` in its own process, over HTTP, with no external server.

SQLite, a local storage folder and Celery's filesystem transport under ``FORENSICS_HOME``.
"""

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from forensics.methods import REGISTRY
from tests.integration_support import HOST, Receiver
from tests.platform_support import REPO, data_file, free_port, poll

pytestmark = pytest.mark.timeout(300)


def test_embedded_mode_serves_api_and_worker_with_no_external_server(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORENSICS_", "DATABASE_URL", "BROKER_URL", "STORAGE_URL", "S3_"))}
    env["FORENSICS_HOME"] = str(home)
    env["FORENSICS_DECODE_SHARE_FOLDER"] = str(home / "decoded")  # not the user's /dev/shm share, which other runs use
    env["FORENSICS_API_KEY"] = key = "fsk_embedded_test_key_0123456789abcdef"
    auth = {"Authorization": f"Bearer {key}"}
    env["FORENSICS_WEBHOOK_ALLOWLIST"] = f"{HOST}/32"
    env["FORENSICS_WEBHOOK_POLL_INTERVAL"] = "1"
    receiver = Receiver().start()
    with (tmp_path / "serve.log").open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", f"from api.embedded import serve; serve('127.0.0.1', {port})"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        health = poll(lambda: _get_json(f"{base}/health"), lambda b: b.get("status") == "ok", 60, "healthy API")
        assert set(health["checks"]) == {"database", "broker", "storage"}
        jpg = data_file("casia2_samples", "authentic/Au_ani_00003.jpg").read_bytes()
        png = data_file("comofod_subset", "tampered/029_F.png").read_bytes()
        assert httpx.post(f"{base}/v1/cases", files=[("images", ("a.jpg", b"x"))]).status_code == 401
        receiver.secrets["/hook"] = httpx.get(f"{base}/v1/webhooks/callback-secret", headers=auth).json()["secret"]
        # direct upload without S3: the slot is a PUT on the API
        slot = httpx.post(f"{base}/v1/uploads", headers=auth, json={"files": [{"filename": "b.png", "size": len(png)}]}).json()["data"][0]
        assert slot["method"] == "PUT" and slot["url"].startswith(base)
        assert httpx.put(slot["url"], headers=auth, content=png).status_code == 204
        created = httpx.post(f"{base}/v1/cases", headers=auth, files=[("images", ("a.jpg", jpg, "image/jpeg"))],
                             data={"callback_url": receiver.url("/hook")})
        from_slot = httpx.post(f"{base}/v1/cases", headers=auth, json={"upload_ids": [slot["upload_id"]]})
        assert from_slot.status_code == 202 and from_slot.json()["images"][0]["filename"] == "b.png"
        assert created.status_code == 202, created.text
        case_url = created.headers["location"]
        case = poll(lambda: httpx.get(case_url, headers=auth).json(), lambda b: b["status"] in ("completed", "failed"), 180, "case end")
        assert case["status"] == "completed" and case["progress"]["completed"] == 1
        case = poll(lambda: httpx.get(from_slot.headers["location"], headers=auth).json(), lambda b: b["status"] in ("completed", "failed"),
                    180, "case end")
        assert case["status"] == "completed" and case["progress"]["completed"] == 1
        report = httpx.get(case["images"][0]["url"], headers=auth).json()
        assert [f["method"] for f in report["findings"]] == list(REGISTRY)
        assert report["original_url"].startswith(base)  # the local folder's files are served by the API
        assert httpx.get(report["original_url"], headers=auth).content == png
        files = f"{base}/v1/cases/{case['id']}/files"
        for folder in ("originals", "images", f"images/{case['images'][0]['id']}", "", "./originals", "originals/"):
            assert httpx.get(f"{files}/{folder}", headers=auth).status_code == 404, folder  # a folder is not a file
        archive = zipfile.ZipFile(io.BytesIO(httpx.get(case["report_url"], headers=auth).content))
        assert len(json.loads(archive.read("batch_summary.json"))["images"]) == 1
        # the embedded worker also runs the webhook queue: the callback got a signed case.completed
        poll(lambda: {"n": len(receiver.at("/hook"))}, lambda b: b["n"] >= 1, 30, "webhook")
        hook = receiver.at("/hook")[0]
        assert hook.verified and hook.payload is not None and hook.payload["type"] == "case.completed"
        assert (home / "forensics.db").exists() and (home / "storage" / "cases").is_dir() and (home / "broker").is_dir()
    finally:
        receiver.stop()
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        worker_log = home / "worker.log"
        if worker_log.exists():  # shown by pytest only when the test fails
            print(worker_log.read_text(errors="replace")[-20000:])
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert server.returncode == 0, log[-3000:]


def _get_json(url: str) -> dict:
    try:
        return httpx.get(url, timeout=5).json()
    except httpx.HTTPError:
        time.sleep(0.5)
        return {}
