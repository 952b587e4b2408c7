"""Thin tasks: take ids, call the service function, retry only transient errors.

Every task is idempotent (it re-reads state and skips work already done), acknowledged
late, and bounded by time limits; :func:`reconcile` repairs whatever still gets stuck.
"""

import logging
import os
from datetime import datetime
from typing import Any
from uuid import UUID

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.request import Request
from sqlalchemy.exc import InterfaceError, OperationalError

from service import analysis, case_pdf, queue
from service.settings import get_settings
from service.storage import StorageError
from service.webhooks import delivery, outbox
from worker.celery_app import app

settings = get_settings()
logger = logging.getLogger(__name__)

#: Errors that may pass: the database or the storage was briefly unreachable.
TRANSIENT = (OperationalError, InterfaceError, StorageError, ConnectionError, TimeoutError)
RELIABLE: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 30,  # a retry's countdown stays under the broker's visibility timeout
    "retry_jitter": True,
    "max_retries": 5,
}


@app.task(name=queue.PREPARE_IMAGE, time_limit=settings.prepare_time_limit, **RELIABLE)
def prepare_image(image_id: str) -> None:
    """Fetch, validate and decode one image, then fan out one task per method."""
    analysis.prepare_image(UUID(image_id))


def _claimant(task_id: str, pid: int | None, hostname: str | None) -> str:
    """Who runs a method delivery: its task id and the pool process that took it. A message that
    Redis delivers again (its visibility timeout passed) carries the same task id to another
    process, so the id alone would not tell the two deliveries apart."""
    return f"{task_id} {pid}@{hostname}"[:200]


class MethodRequest(Request):
    """A method task's request in the worker's main process. When the pool process running it
    dies (WorkerLostError: killed, out of memory), the message goes back to the queue
    (``task_reject_on_worker_lost``); its finding's claim is given back first, so that the next
    delivery runs it at once instead of after the lease (Celery, "Custom request classes")."""

    def on_failure(self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, WorkerLostError):
            image_id, method = self.args
            try:
                if analysis.give_back_lost_claim(UUID(image_id), method, _claimant(self.id, self.worker_pid, self.hostname)):
                    logger.warning("%s of image %s: its pool process died: claim given back", method, image_id)
            except TRANSIENT:
                logger.warning("could not give back the claim of %s on image %s; it runs again after its lease",
                               method, image_id, exc_info=True)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


@app.task(
    name=queue.RUN_METHOD,
    bind=True,
    Request=MethodRequest,
    soft_time_limit=settings.method_soft_time_limit,
    time_limit=settings.method_time_limit,
    **RELIABLE,
)
def run_method(self: Task, image_id: str, method: str) -> None:
    """Run one forensic method on one image; the last one of the image enqueues the join."""
    try:
        analysis.run_method(UUID(image_id), method, claimant=_claimant(self.request.id, os.getpid(), self.request.hostname))
    except SoftTimeLimitExceeded:
        analysis.record_method_error(
            UUID(image_id), method, f"The method did not finish within {settings.method_soft_time_limit} s."
        )


@app.task(name=queue.FUSE_IMAGE, time_limit=settings.fuse_time_limit, **RELIABLE)
def fuse_image(image_id: str) -> None:
    """Fuse an image's findings into its score, verdict and maps; close the case if it was the last."""
    analysis.fuse_image(UUID(image_id))


@app.task(name=queue.STORE_CASE_PDF, time_limit=settings.pdf_time_limit, **RELIABLE)
def store_case_pdf(case_id: str) -> None:
    """Render a closed case's PDF and keep it in storage, for the API and the dossier zip."""
    case_pdf.store(UUID(case_id))


@app.task(name=queue.RECONCILE, time_limit=300, **RELIABLE)
def reconcile(broker_lost_at: str | None = None) -> None:
    """Repair work stuck past its time limit or whose message was lost; ``broker_lost_at`` (ISO
    8601), sent by a worker whose broker connection failed, says when messages may have been lost."""
    analysis.reconcile(broker_lost_at=None if broker_lost_at is None else datetime.fromisoformat(broker_lost_at))


@app.task(name=queue.DELIVER_WEBHOOK, time_limit=int(settings.webhook_timeout * 2) + 30, **RELIABLE)
def deliver_webhook(delivery_id: str) -> None:
    """One attempt of a webhook delivery (its retries are scheduled in the outbox, not here)."""
    delivery.deliver(delivery_id)


@app.task(name=queue.DISPATCH_WEBHOOKS, time_limit=120, **RELIABLE)
def dispatch_webhooks() -> None:
    """Send the webhook deliveries that are due (retries, and messages lost after their commit)."""
    outbox.dispatch_due()
