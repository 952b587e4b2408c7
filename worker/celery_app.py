"""The worker's Celery app: ``celery -A worker.celery_app worker`` (add ``-B`` or run ``beat`` for the reconciler)."""

import os
from typing import Any

import cv2
from billiard.process import current_process
from celery.signals import task_postrun, worker_process_init
from threadpoolctl import threadpool_limits

from forensics.allocator import retain_freed_memory, trim_freed_memory
from service.db import get_autocommit_engine, get_engine
from service.queue import get_celery
from service.settings import get_settings
from worker import observability  # noqa: F401 - connects the logging, metrics and correlation signal handlers
from worker.broker_loss import ResendAfterBrokerLoss

app = get_celery()
app.conf.include = ["worker.tasks"]
app.steps["consumer"].add(ResendAfterBrokerLoss)


@worker_process_init.connect
def _init_pool_process(**_: Any) -> None:
    """A forked pool process must not share the parent's database connections; and it gets one
    OpenCV thread and one BLAS thread, since the pool already runs one process per core: more
    threads only contend (OpenBLAS's spinning threads slowed copy-move's descriptor product);
    and it keeps freed memory for the next image (``forensics.allocator``)."""
    settings = get_settings()
    for engine in (get_engine(), get_autocommit_engine()):
        engine.dispose(close=False)
    cv2.setNumThreads(1)
    threadpool_limits(limits=1)
    if settings.worker_retain_memory:
        retain_freed_memory()
    if settings.worker_pin_cpus:
        # One CPU per pool process keeps its caches warm and stops it migrating (measured: two
        # pinned engine processes do about 9 % more than two free ones on this 2-core machine).
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[getattr(current_process(), "index", 0) % len(cpus)]})


@task_postrun.connect
def _trim_after_task(**_: Any) -> None:
    """A process that keeps freed memory gives it back after a task that left it large (a
    large image's), so that the next large image starts from what is in use."""
    if get_settings().worker_retain_memory:
        trim_freed_memory()
