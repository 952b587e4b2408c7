"""Stopping ``forensics serve`` while its worker is busy: SIGTERM (as systemd and Docker send it)
to ``serve``, to its process group (``kill -- -PGID``) or to each of its processes at once
(systemd's control group), and SIGINT to the group (Ctrl-C), end every process of it within 20 s;
the work cut off is done after the next start on the same home, each finding once: nothing is lost.
A worker killed while ``serve`` runs is replaced, and its work done, without a restart."""

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

from api import embedded
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


def _worker(serve: Serve) -> int:
    """The pid of ``serve``'s worker (in a session of its own)."""
    (worker,) = [pid for pid in descendants(serve.process.pid) if os.getpgid(pid) == pid]
    return worker


def _case_while_methods_run(serve: Serve, home: Path, photo: bytes) -> str:
    """A case of one photo, once its methods run (their messages taken by the worker)."""
    created = httpx.post(f"{serve.base}/v1/cases", headers=AUTH, files=[("images", ("photo.jpg", photo, "image/jpeg"))], timeout=60)
    assert created.status_code == 202, created.text
    poll(lambda: _running_methods(home), bool, 120, "methods running")
    return created.headers["location"]


def _assert_done_once(serve: Serve, case_url: str, within: float) -> None:
    case = poll(lambda: serve.get(case_url), lambda c: c["status"] in ("completed", "failed"), within, "the case done")
    assert case["status"] == "completed", case
    report = serve.get(case["images"][0]["url"])
    assert [f["method"] for f in report["findings"]] == list(REGISTRY), "each method once"
    assert all(f["status"] in ("ok", "not_applicable") for f in report["findings"]), report["findings"]


def test_the_work_a_killed_worker_held_is_sent_again(tmp_path: Path) -> None:
    """A killed worker (by the kernel's out-of-memory killer, or at the stop's deadline) takes the
    messages it held with it. While ``serve`` runs, it replaces the worker and sends everything in
    flight again: the case completes within the 90 s the issue allows after the kill, long before
    the lease (600 s here) would have freed the running methods or FORENSICS_REQUEUE_AFTER (900 s)
    the rest. When ``serve`` and its worker are killed together, the next start sends it all again
    before its worker starts. Each finding once; meanwhile a second ``serve`` on the same home is
    refused."""
    home, log = tmp_path / "home", tmp_path / "serve.log"
    settings = {"FORENSICS_LEASE_SECONDS": "600"}
    first, second = _photos(2)
    serve = Serve(home, log, **settings)
    try:
        case_url = _case_while_methods_run(serve, home, first)
        killed = _worker(serve)
        os.killpg(killed, signal.SIGKILL)
        start = time.monotonic()
        _assert_done_once(serve, case_url, 90)
        print(f"the case completed {time.monotonic() - start:.1f} s after its worker was killed")
        assert _worker(serve) != killed
        assert "the worker exited (status -9)" in log.read_text(errors="replace")

        case_url = _case_while_methods_run(serve, home, second)
        serve.kill()  # serve and its worker killed together: nothing of this run can send the work again
        assert not (home / "worker-stopped").exists(), "a killed worker is not marked as stopped by itself"
    except BaseException:
        serve.kill()
        raise

    serve = Serve(home, log, **settings)
    try:
        refused = subprocess.run(
            [sys.executable, "-m", "forensics.cli", "serve", "--port", str(free_port())],
            cwd=REPO, env=serve.env, capture_output=True, text=True, timeout=120,
        )
        assert refused.returncode == 1 and "in use by another forensics serve" in refused.stderr, refused.stderr[-2000:]
        _assert_done_once(serve, case_url, 180)
    finally:
        _stop(serve)
    assert (home / "worker-stopped").exists(), "a worker that stopped by itself is marked"


def test_a_worker_that_keeps_dying_is_started_again_after_pauses_that_double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that exits at once (a bad setting, a missing library) is not restarted in a tight
    loop: each start waits twice as long as the one before, after what it held is sent again; a
    stop ends the watch at once, and a dead worker is not marked as stopped by itself."""
    monkeypatch.setattr(embedded, "WATCH_SECONDS", 0.05)
    monkeypatch.setattr(embedded, "FIRST_RESTART_PAUSE", 0.3)
    starts: list[float] = []
    resent: list[float] = []

    def start() -> subprocess.Popen[bytes]:
        starts.append(time.monotonic())
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)

    supervisor = embedded._Supervisor(start, lambda: resent.append(time.monotonic()), tmp_path / "worker-stopped")
    supervisor.watcher.start()
    poll(lambda: len(starts), lambda n: n >= 4, 30, "four starts")
    supervisor(signal.SIGTERM, None)
    supervisor.wait_for_worker()
    stopped_with = len(starts)
    time.sleep(0.5)

    gaps = np.diff(starts[:4])
    assert [round(g, 1) for g in gaps] == pytest.approx([0.3, 0.6, 1.2], abs=0.5) and all(np.diff(gaps) > 0.2), gaps
    assert len(resent) == len(starts) - 1 and all(a <= b for a, b in zip(resent, starts[1:], strict=True))
    assert len(starts) == stopped_with, "no start after the stop"
    assert not supervisor.watcher.is_alive()
    assert not (tmp_path / "worker-stopped").exists()
