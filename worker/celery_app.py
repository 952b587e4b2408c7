"""The worker's Celery app: ``celery -A worker.celery_app worker`` (add ``-B`` or run ``beat`` for the reconciler)."""

from typing import Any

from celery.signals import worker_process_init

from service.db import get_engine
from service.queue import get_celery

app = get_celery()
app.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked pool process must not share the parent's database connections."""
    get_engine().dispose(close=False)
