"""Publishing work after its commit, and the heartbeats of work while it runs.

Both exist so that lost work is found in seconds rather than after a time limit:

- The rows are the outbox: a new image or finding is written with ``enqueued_at`` unset, and
  only a publish that succeeded sets it. A row still unset a lease after it was written
  was never sent (the broker refused it, or the process died between the commit and the
  publish), and the reconciler sends it, where it would otherwise wait
  ``FORENSICS_REQUEUE_AFTER`` to tell a lost message from a long queue. A failed re-send
  clears ``enqueued_at`` again. Celery's own publish retry covers the shortest blips first.
- A running task beats every third of ``FORENSICS_LEASE_SECONDS`` (a finding's
  ``alive_at``, an image's ``updated_at``). When its process dies (killed, out of memory,
  the machine gone) the beats stop, and once the lease has passed the reconciler hands the
  work to another delivery; a claim only takes work that is pending or whose lease passed,
  so no finding ever runs twice at once.
"""

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, update

from service import queue
from service.db import session_scope
from service.metrics import PUBLISH_FAILURES
from service.models import FindingRow, FindingStatus, Image, ImageStatus, utcnow
from service.settings import get_settings

logger = logging.getLogger(__name__)


def _publish(task: str, send: Callable[[], None], count: int) -> bool:
    """Publish ``count`` tasks of one kind with ``send``; a failure is logged and counted, never raised:
    the committed rows are the outbox, and the reconciler re-sends what was not published."""
    try:
        send()
    except Exception:  # noqa: BLE001 - any publish failure
        logger.exception("could not publish %d %s tasks; the reconciler will re-send them", count, task)
        PUBLISH_FAILURES.labels(task).inc(count)
        return False
    return True


def send_prepares(image_ids: Iterable[uuid.UUID]) -> None:
    """Publish the prepare tasks of committed images; on failure leave them to the reconciler."""
    ids = list(image_ids)
    if not ids:
        return
    waiting = update(Image).where(Image.id.in_(ids), Image.status == ImageStatus.QUEUED, Image.attempts == 0)
    if _publish(queue.PREPARE_IMAGE, lambda: queue.enqueue_prepare(ids), len(ids)):
        _mark(waiting.where(Image.enqueued_at.is_(None)), utcnow())
    else:
        _mark(waiting, None)


def send_methods(jobs: Iterable[tuple[uuid.UUID, str]]) -> None:
    """Publish method tasks of committed findings; on failure leave them to the reconciler."""
    pairs = list(jobs)
    if not pairs:
        return
    sent = _publish(queue.RUN_METHOD, lambda: queue.enqueue_methods(pairs), len(pairs))
    for image_id in {image_id for image_id, _ in pairs}:
        methods = [method for i, method in pairs if i == image_id]
        waiting = update(FindingRow).where(
            FindingRow.image_id == image_id, FindingRow.method.in_(methods), FindingRow.status == FindingStatus.PENDING
        )
        if sent:
            _mark(waiting.where(FindingRow.enqueued_at.is_(None)), utcnow())
        else:
            _mark(waiting, None)


def send_case_pdf(case_id: uuid.UUID) -> None:
    """Ask a worker for a closed case's PDF; if that publish fails the API renders it on request."""
    _publish(queue.STORE_CASE_PDF, lambda: queue.enqueue_case_pdf(case_id), 1)


def report_broker_loss(lost_at: datetime) -> None:
    """Ask the reconciler to re-send what was queued when a worker lost the broker at ``lost_at``
    (:func:`service.analysis.reconcile`); if this publish fails too, the reconciler's own
    schedule re-sends lost work after ``FORENSICS_REQUEUE_AFTER``."""
    _publish(queue.RECONCILE, lambda: queue.enqueue_reconcile(lost_at), 1)


def send_fuses(image_ids: Iterable[uuid.UUID]) -> None:
    """Publish join tasks; an image left ``fusing`` stops beating, so the reconciler re-sends it after the lease."""
    ids = list(image_ids)
    if ids:
        _publish(queue.FUSE_IMAGE, lambda: queue.enqueue_fuse(ids), len(ids))


def _mark(statement: Any, enqueued_at: datetime | None) -> None:
    """Record a publish (its time) or its failure (None); best effort: a row left unset is re-sent
    after a lease (a duplicate message is refused by the claim), one left set after
    ``FORENSICS_REQUEUE_AFTER``."""
    try:
        with session_scope(autocommit=True) as session:
            session.execute(statement.values(enqueued_at=enqueued_at).execution_options(synchronize_session=False))
    except Exception:  # noqa: BLE001
        logger.exception("could not record the publish of queued work")


@contextmanager
def heartbeat(statement: Executable, params: dict[str, Any]) -> Iterator[None]:
    """Execute ``statement`` (with ``now``) every third of the lease until the block ends.

    The beats run in a thread with a session of their own: a method holds its process's
    CPU in numpy and OpenCV calls that release the GIL, so the thread keeps time."""
    interval = get_settings().lease_seconds / 3
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                with session_scope(autocommit=True) as session:
                    session.execute(statement, params | {"now": utcnow()})
            except Exception:  # noqa: BLE001 - the next beat makes up for a missed one
                logger.warning("heartbeat failed", exc_info=True)

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
