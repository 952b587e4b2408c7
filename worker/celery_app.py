"""The worker's Celery app: ``celery -A worker.celery_app worker`` (add ``-B`` or run ``beat`` for the reconciler)."""

from typing import Any

import cv2
from celery.signals import worker_process_init

from service.db import get_engine
from service.queue import get_celery

app = get_celery()
app.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _init_pool_process(**_: Any) -> None:
    """A forked pool process must not share the parent's database connections; and it gets one
    OpenCV thread, since the pool already runs one process per core (more threads only contend)."""
    get_engine().dispose(close=False)
    cv2.setNumThreads(1)
