"""Real services for the platform tests: a throwaway Postgres database, a Redis key prefix,
moto's S3 server over HTTP on loopback, and real Celery worker processes (never eager mode)."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("FORENSICS_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FORENSICS_TEST_REDIS", "redis://127.0.0.1:6379/14")

#: Settings-cache holders cleared whenever the test process's environment changes.
_CACHED = ("service.settings.get_settings", "service.db.get_engine", "service.db.get_autocommit_engine",
           "service.db.get_sessionmaker", "service.storage.get_storage", "service.queue.get_celery",
           "service.ratelimit.get_counter")


def clear_caches() -> None:
    import importlib

    for dotted in _CACHED:
        module, name = dotted.rsplit(".", 1)
        getattr(importlib.import_module(module), name).cache_clear()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` (and the settings caches) for the block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    clear_caches()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        clear_caches()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database ``forensics_test_<random>`` migrated with Alembic; dropped afterwards."""
    from sqlalchemy import create_engine, text

    from service.db import migrate

    name = f"forensics_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the service is down: the platform tests cannot run here
        admin.dispose()
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is not available: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        yield url
    finally:
        from service.db import get_autocommit_engine, get_engine

        get_engine.cache_clear()
        get_autocommit_engine.cache_clear()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def api_app(home: Path) -> Iterator[Any]:
    """The API's app over a fresh PostgreSQL database, the local Redis and a storage folder in ``home``
    (for tests that call routes through a TestClient, with no worker)."""
    with (
        postgres_database() as db_url,
        environment({"DATABASE_URL": db_url, "FORENSICS_HOME": str(home), "BROKER_URL": REDIS_URL, "STORAGE_URL": (home / "storage").as_uri()}),
    ):
        from api.main import create_app

        yield create_app()


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def service_env(db_url: str, s3_endpoint: str, home: Path, name: str, **overrides: str) -> dict[str, str]:
    """The distributed setup's settings for a test module: its own Postgres database, Redis key
    prefix, S3 bucket (on moto's server) and home folder; ``overrides`` add or replace settings."""
    run = uuid.uuid4().hex[:8]
    return {
        "DATABASE_URL": db_url,
        "BROKER_URL": REDIS_URL,
        "FORENSICS_BROKER_KEY_PREFIX": f"forensics-{name}-{run}:",
        "STORAGE_URL": f"s3://forensics-{name}/{run}",
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_ACCESS_KEY_ID": "testing",
        "S3_SECRET_ACCESS_KEY": "testing",
        "S3_REGION": "us-east-1",
        "FORENSICS_S3_CREATE_BUCKET": "true",
        "FORENSICS_HOME": str(home),
        "FORENSICS_DECODE_SHARE_FOLDER": str(home / "decoded"),
        "FORENSICS_ENVIRONMENT": "test",
        "FORENSICS_RECONCILE_INTERVAL": "2",
        **overrides,
    }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ApiServer:
    """A real ``uvicorn`` API (``workers`` processes) on a free loopback port, with ``env`` as its
    settings; ready once ``/health`` answers 200. Quiet, or with ``log_config`` logging as in
    production (the service's logging config, access log included)."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1, *, log_config: bool = False) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        logging = ["--log-config", str(REPO / "service" / "logging.json")] if log_config else ["--no-access-log", "--log-level", "warning"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
             *logging],
            cwd=REPO, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the API did not start; see {log}")

    def rss_mb(self) -> float:
        """Resident memory of the API processes (the parent and its uvicorn workers), in MB."""
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if uvicorn's graceful stop is still waiting on a request after 30 s
        (so that a hung request fails its own test, not the next one)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self._log.close()


class Worker:
    """A real ``celery worker`` process (prefork pool) with the test settings in its environment."""

    def __init__(self, env: dict[str, str], log: Path, name: str, *, beat: bool = True, concurrency: int = 2) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--pool", "prefork", "--concurrency", str(concurrency), "--hostname", f"{name}@%h",
            "--without-mingle", "--without-gossip", "--loglevel", "INFO",
        ]
        if beat:
            command += ["--beat", "--schedule", str(log.with_suffix(".schedule"))]
        self.log = log
        self._out = log.open("ab")
        self.process = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env}, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"the worker did not start:\n{self.log.read_text(errors='replace')[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool children die at once."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._out.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._out.close()


def drop_redis_keys(prefix: str) -> None:
    """Remove what a test module's run left in Redis under its key prefix (queued duplicates, the reconciler's last messages)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()


def make_tenant(name: str | None = None) -> tuple[uuid.UUID, str]:
    """A new tenant with one API key on the configured database: (tenant id, key)."""
    from service.db import session_scope
    from service.tenants import create_key, create_tenant

    with session_scope() as session:
        tenant = create_tenant(session, name or f"tenant-{uuid.uuid4().hex[:8]}")
        return tenant.id, create_key(session, tenant, name="test")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str) -> T:
    """``fetch()`` every 0.3 s until ``done`` holds for its value; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    body = fetch()
    while not done(body):
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout} s; last: {body}")
        time.sleep(0.3)
        body = fetch()
    return body


def fetch_url(client: Any, url: str) -> httpx.Response:
    """GET a URL from a report: through the in-process API when it is ours, over HTTP when presigned."""
    if url.startswith("http://testserver"):
        return client.get(url)
    return httpx.get(url, timeout=10)


def data_file(folder: str, name: str) -> Path:
    path = REPO.parent / "shared" / "data" / folder / name
    if not path.exists():
        pytest.skip(f"reference data {path} is absent")
    return path


def descendants(pid: int) -> list[int]:
    """The ids of every process below ``pid`` (children, theirs, ...), read from ``/proc``."""
    found = []
    try:
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # gone
        return []
    for thread in threads:
        try:
            children = [int(c) for c in (thread / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def running(pid: int) -> bool:
    """True while ``pid`` is a process that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
