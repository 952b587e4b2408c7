"""Stopping ``forensics serve`` while its worker is busy: SIGTERM (as systemd and Docker send it)
to ``serve``, to its process group (``kill -- -PGID``) or to each of its processes at once
(systemd's control group), and SIGINT to the group (Ctrl-C), end every process of it within 20 s;
the work cut off is done after the next start on the same home, each finding once: nothing is lost."""

import functools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest

from forensics.methods import REGISTRY
from tests.conftest import jpeg_bytes
from tests.platform_support import REPO, descendants, free_port, poll, running

pytestmark = pytest.mark.timeout(400)

KEY = "fsk_embedded_stop_test_key_0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
#: The issue's target: every process of ``serve`` gone within 20 s of the signal.
STOP_WITHIN = 20.0


class Serve:
    """``forensics serve`` on ``home`` and a free port, in a session (and process group) of its own."""

    def __init__(self, home: Path, log: Path, **settings: str) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORENSICS_", "DATABASE_URL", "BROKER_URL", "STORAGE_URL", "S3_"))}
        env.update(FORENSICS_HOME=str(home), FORENSICS_API_KEY=KEY, FORENSICS_DECODE_SHARE_FOLDER=str(home / "decoded"), **settings)
        self.env = env
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "forensics.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        poll(self._health, lambda b: b.get("status") == "ok", 90, "healthy API")

    def _health(self) -> dict:
        try:
            return httpx.get(f"{self.base}/health", timeout=5).json()
        except httpx.HTTPError:
            time.sleep(0.5)
            return {}

    def get(self, path: str) -> dict:
        """``path`` (a path, or a URL of an earlier ``serve`` on another port) from this one."""
        return httpx.get(self.base + urlsplit(path).path, headers=AUTH, timeout=10).json()

    def kill(self) -> None:
        """Cleanup after a failure: SIGKILL whatever is left."""
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


@functools.cache
def _photos(count: int) -> tuple[bytes, ...]:
    """``count`` different 12 MP JPEGs: enough work to keep two pool processes busy for a while
    (made once: each test uses a home of its own)."""
    from skimage import data

    big = cv2.resize(data.astronaut(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(7)
    return tuple(jpeg_bytes(np.clip(big + rng.integers(-3, 4, big.shape), 0, 255).astype(np.uint8)) for _ in range(count))


def _statuses(home: Path) -> list[str]:
    with sqlite3.connect(home / "forensics.db") as db:
        return [row[0] for row in db.execute("SELECT status FROM images")]


def _running_methods(home: Path) -> int:
    with sqlite3.connect(home / "forensics.db") as db:
        return db.execute("SELECT count(*) FROM findings WHERE status = 'running'").fetchone()[0]


@pytest.mark.parametrize(
    ("target", "signum"),
    [("serve", signal.SIGTERM), ("group", signal.SIGTERM), ("every", signal.SIGTERM), ("group", signal.SIGINT)],
    ids=["sigterm-serve", "sigterm-group", "sigterm-every-process", "sigint-group"],
)
def test_a_busy_serve_stops_within_20_s_and_finishes_the_work_after_a_restart(tmp_path: Path, target: str, signum: int) -> None:
    home, log = tmp_path / "home", tmp_path / "serve.log"
    serve = Serve(home, log)
    try:
        files = [("images", (f"photo{i}.jpg", data, "image/jpeg")) for i, data in enumerate(_photos(2))]
        created = httpx.post(f"{serve.base}/v1/cases", headers=AUTH, files=files, timeout=60)
        assert created.status_code == 202, created.text
        case_url = created.headers["location"]
        poll(lambda: serve.get(case_url), lambda c: any(i["status"] == "running" for i in c["images"]), 120, "an image running")
        processes = [serve.process.pid, *descendants(serve.process.pid)]
        assert len(processes) >= 4, f"serve, the worker, its pool and beat: {processes}"

        start = time.monotonic()
        if target == "group":
            os.killpg(serve.process.pid, signum)
        elif target == "every":  # systemd's KillMode=control-group: each process of the unit at once
            for pid in processes:
                os.kill(pid, signum)
        else:
            serve.process.send_signal(signum)
        while any(running(pid) for pid in processes) and time.monotonic() - start < STOP_WITHIN:
            time.sleep(0.1)
        seconds = time.monotonic() - start
        left = [pid for pid in processes if running(pid)]
        assert not left, f"still running {STOP_WITHIN:.0f} s after the signal: {left}\n{log.read_text(errors='replace')[-3000:]}"
        assert serve.process.wait(timeout=5) == 0
        print(f"{target} {signal.Signals(signum).name}: all {len(processes)} processes gone in {seconds:.1f} s")
        assert set(_statuses(home)) != {"completed"}, "the stop cut work off"
    except BaseException:
        serve.kill()
        raise

    serve = Serve(home, log)
    try:
        case = poll(lambda: serve.get(case_url), lambda c: c["status"] in ("completed", "failed"), 240, "the case done after the restart")
        assert case["status"] == "completed" and case["progress"]["completed"] == 2, case
        for image in case["images"]:
            report = serve.get(image["url"])
            assert [f["method"] for f in report["findings"]] == list(REGISTRY), "each method once"
            assert all(f["status"] in ("ok", "not_applicable") for f in report["findings"]), report["findings"]
    finally:
        serve.kill()  # the stop under test came before: cleaning up needs no grace period


def _stop(serve: Serve) -> None:
    serve.process.send_signal(signal.SIGTERM)
    try:
        serve.process.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        serve.kill()


def test_the_work_a_killed_worker_held_is_sent_again_at_the_next_start(tmp_path: Path) -> None:
    """A worker killed (at the stop's deadline, or by the kernel's out-of-memory killer) takes the
    messages it held with it. The next start sends everything in flight again before its worker
    starts: the case completes long before the lease (600 s here) would have freed the running
    methods or FORENSICS_REQUEUE_AFTER (900 s) the rest, each finding once. Meanwhile a second
    ``serve`` on the same home is refused."""
    home, log = tmp_path / "home", tmp_path / "serve.log"
    settings = {"FORENSICS_LEASE_SECONDS": "600"}
    serve = Serve(home, log, **settings)
    try:
        created = httpx.post(f"{serve.base}/v1/cases", headers=AUTH, files=[("images", ("photo.jpg", _photos(1)[0], "image/jpeg"))], timeout=60)
        assert created.status_code == 202, created.text
        case_url = created.headers["location"]
        poll(lambda: _running_methods(home), bool, 120, "methods running (their messages taken by the worker)")
        (worker,) = [pid for pid in descendants(serve.process.pid) if os.getpgid(pid) == pid]  # in a session of its own
        os.killpg(worker, signal.SIGKILL)
        _stop(serve)
        assert not (home / "worker-stopped").exists(), "a killed worker is not marked as stopped by itself"
    except BaseException:
        serve.kill()
        raise

    serve = Serve(home, log, **settings)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "forensics.cli", "serve", "--port", str(free_port())],
            cwd=REPO, env=serve.env, capture_output=True, text=True, timeout=120,
        )
        assert second.returncode == 1 and "in use by another forensics serve" in second.stderr, second.stderr[-2000:]
        case = poll(lambda: serve.get(case_url), lambda c: c["status"] in ("completed", "failed"), 180, "the case done after the restart")
        assert case["status"] == "completed", case
        report = serve.get(case["images"][0]["url"])
        assert [f["method"] for f in report["findings"]] == list(REGISTRY), "each method once"
        assert all(f["status"] in ("ok", "not_applicable") for f in report["findings"]), report["findings"]
    finally:
        _stop(serve)
    assert (home / "worker-stopped").exists(), "a worker that stopped by itself is marked"
