"""Embedded mode: the API and a worker on one machine with no external server.

SQLite, a local storage folder and Celery's filesystem transport, all under
``FORENSICS_HOME`` (default ``./forensics-data``): the same code paths as the distributed
setup, selected only by the settings' defaults. ``forensics serve`` calls :func:`serve`.

On first start (no tenant yet) a tenant ``default`` is made with one API key: the value of
``FORENSICS_API_KEY`` when set, else a new key printed once on standard error.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import uvicorn

from service.db import migrate, session_scope
from service.logs import logging_config
from service.settings import Settings, get_settings
from service.tenants import ensure_first_key

logger = logging.getLogger(__name__)


def worker_command(concurrency: int | None = None) -> list[str]:
    """The Celery worker (with the reconciler's beat embedded) as a child process of ``serve``."""
    settings = get_settings()
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--beat",
        "--schedule",
        str(settings.home / "beat-schedule"),
        "--concurrency",
        str(concurrency or os.cpu_count() or 1),
        "--hostname",
        "embedded@%h",
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "INFO",
    ]


def _share_metrics(settings: Settings) -> None:
    """The API and the worker count in one multiprocess folder (``$FORENSICS_HOME/metrics`` unless
    ``PROMETHEUS_MULTIPROC_DIR`` says otherwise), emptied at each start. Set before
    prometheus_client is first imported (with ``api.main``): it chooses its mode then."""
    folder = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.home / "metrics")))
    from service.metrics import empty_folder  # after the variable, see above

    empty_folder(folder)


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Migrate the database, start a worker process, and serve the API until interrupted."""
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate()
    with session_scope() as session:
        key = ensure_first_key(session, settings.api_key)
    if key is not None and settings.api_key is None:
        # the one moment the key exists in clear: the user must see it (it is stored only as a hash)
        sys.stderr.write(f"\nAPI key of tenant 'default' (shown once, keep it): {key}\n"
                         f"  curl -H 'Authorization: Bearer {key}' http://{host}:{port}/v1/cases\n\n")
        sys.stderr.flush()
    _share_metrics(settings)
    env = {**os.environ, "FORENSICS_HOME": str(settings.home)}
    with (settings.home / "worker.log").open("ab") as log:
        worker = subprocess.Popen(worker_command(), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        from api.main import app

        uvicorn.run(app, host=host, port=port, log_config=logging_config())
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
