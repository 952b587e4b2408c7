"""The worker's logs, metrics and correlation, as Celery signal handlers (connected when
``worker/celery_app.py`` imports this module).

- ``setup_logging``: Celery leaves logging to us (:mod:`service.logs`), in the main process
  and in each pool process.
- ``task_prerun`` / ``task_postrun`` (in the pool process, around each task): bind the
  correlation the message carries, plus the image of an image's task, so the task's log
  lines and the tasks it sends carry them; count the task by outcome (postrun's state:
  success, failure, retry) and time it. A task whose process is killed never reaches
  postrun; the reconciler's repairs count that work.
- ``worker_init`` (in the main process, before the pool starts): with
  ``FORENSICS_WORKER_METRICS_PORT``, serve the machine's worker metrics over HTTP, for a
  worker on a machine without the API.
"""

import logging.config
import time
from contextvars import Token
from typing import Any

from celery import Task
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init
from prometheus_client import start_http_server

from service import correlation, logs, metrics, queue
from service.settings import get_settings

#: Tasks whose first argument is an image id.
IMAGE_TASKS = frozenset({queue.PREPARE_IMAGE, queue.RUN_METHOD, queue.FUSE_IMAGE})

# task id -> (start, correlation token); one entry per task running in this process
_running: dict[str, tuple[float, Token[Any]]] = {}


@setup_logging.connect
def configure_logging(loglevel: int | str | None = None, **_: Any) -> None:
    logging.config.dictConfig(logs.logging_config(loglevel))
    logging.captureWarnings(True)  # a warning is an event too: one formatted line, not text on stderr


@task_prerun.connect
def task_started(task_id: str, task: Task, args: tuple[Any, ...] | list[Any] = (), **_: Any) -> None:
    context = correlation.from_headers(task.request.headers)
    if task.name in IMAGE_TASKS and args:
        context["image_id"] = str(args[0])
    _running[task_id] = (time.perf_counter(), correlation.bind(**context))
    metrics.TASKS_RUNNING.labels(task.name).inc()


@task_postrun.connect
def task_finished(task_id: str, task: Task, state: str | None = None, **_: Any) -> None:
    outcome = (state or "unknown").lower()
    metrics.TASKS_RUNNING.labels(task.name).dec()
    metrics.TASKS.labels(task.name, outcome).inc()
    started = _running.pop(task_id, None)
    if started is not None:
        start, token = started
        metrics.TASK_SECONDS.labels(task.name, outcome).observe(time.perf_counter() - start)
        correlation.reset(token)


@worker_init.connect
def serve_metrics(**_: Any) -> None:
    """The worker's own ``/metrics`` (no token: protect it by the address it listens on). The
    main process empties the multiprocess folder first: it is this worker's alone, and its
    pool processes have not started yet."""
    settings = get_settings()
    if not settings.worker_metrics_port:
        return
    folder = metrics.multiprocess_folder()
    if folder is None:
        raise RuntimeError("FORENSICS_WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR: the pool processes count in files there")
    metrics.empty_folder(folder)
    start_http_server(settings.worker_metrics_port, settings.worker_metrics_host, registry=metrics.registry())
