"""The Celery application (configuration only) and the functions that enqueue work by task name.

The API sends tasks by name through this app without importing the worker's code; the
worker (``worker/celery_app.py``) uses the same app and registers the tasks. Five queues,
consumed in this order where the broker supports it (Redis ``queue_order_strategy``):
``control`` (the reconciler), ``webhooks`` (deliveries and their dispatcher: a worker may
also consume only this queue with ``-Q webhooks``), ``reports`` (a closed case's PDF, ahead of
the analysis so that it does not wait behind other cases' work), ``analysis`` (methods and joins: finish
started images first, which also keeps decoded images in the workers' caches), ``intake``
(prepare).
"""

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from uuid import UUID

from celery import Celery
from kombu import Queue

from service import correlation
from service.settings import Settings, get_settings

PREPARE_IMAGE = "forensics.prepare_image"
RUN_METHOD = "forensics.run_method"
FUSE_IMAGE = "forensics.fuse_image"
RECONCILE = "forensics.reconcile"
DELIVER_WEBHOOK = "forensics.deliver_webhook"
DISPATCH_WEBHOOKS = "forensics.dispatch_webhooks"
STORE_CASE_PDF = "forensics.store_case_pdf"

QUEUES = ("control", "webhooks", "reports", "analysis", "intake")
ROUTES = {
    STORE_CASE_PDF: "reports",
    PREPARE_IMAGE: "intake",
    RUN_METHOD: "analysis",
    FUSE_IMAGE: "analysis",
    RECONCILE: "control",
    DELIVER_WEBHOOK: "webhooks",
    DISPATCH_WEBHOOKS: "webhooks",
}


def _transport_options(settings: Settings) -> dict[str, object]:
    if settings.embedded_broker:
        folder = settings.broker_folder
        (folder / "queue").mkdir(parents=True, exist_ok=True)
        (folder / "control").mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "polling_interval": 0.1,
        }
    # A message taken by a worker that died (its process group killed, its machine gone) comes back
    # after the visibility timeout; kombu looks for such messages every 10 s (throttle 1, not every
    # 100 s). A copy delivered while the first still runs is harmless: the finding's lease refuses it.
    options: dict[str, object] = {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_throttle": 1,
        "queue_order_strategy": "priority",
    }
    if settings.broker_key_prefix:
        options["global_keyprefix"] = settings.broker_key_prefix
    return options


def make_celery(settings: Settings) -> Celery:
    app = Celery("forensics", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # There is no result backend (Celery's stateless DisabledBackend): one instance serves every
        # thread. Celery otherwise builds one per thread on its first publish, about 15 ms of
        # entry-point scanning each time the API's thread pool grows during a burst.
        result_backend_thread_safe=True,
        # Reliability: a message is acknowledged after its task ran, one message at a time.
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        # A task whose pool process dies goes back to the queue: a finding not yet claimed runs at
        # once; a claimed one is refused by its lease until the reconciler frees it, which also
        # bounds a task that kills its process every time (FORENSICS_MAX_ATTEMPTS claims).
        task_reject_on_worker_lost=True,
        # Recycling a pool process can leave one slot idle for 5 s: a message given to the process
        # as it exits waits for Celery's 5 s pool maintenance (celery/celery#9588). So processes
        # are recycled rarely by count, and early only when a large image left a large heap.
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
        # A cold shutdown lets running tasks finish for a few seconds, then stops them; being
        # acknowledged only once done, they go back to the queue (forensics serve: api/embedded.py).
        worker_soft_shutdown_timeout=settings.worker_soft_shutdown_seconds,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Task events stay off (Celery's default) unless a monitor such as Flower enables them.
        broker_transport_options=_transport_options(settings),
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="intake",
        task_routes={name: {"queue": queue} for name, queue in ROUTES.items()},
        beat_schedule={
            "reconcile": {"task": RECONCILE, "schedule": settings.reconcile_interval},
            "dispatch-webhooks": {
                "task": DISPATCH_WEBHOOKS,
                "schedule": settings.webhook_poll_interval,
                "options": {"expires": settings.webhook_poll_interval * 2},
            },
        },
    )
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())


def _send(name: str, args_list: Iterable[list[str]]) -> None:
    app = get_celery()
    with app.producer_or_acquire() as producer:
        for args in args_list:
            app.send_task(name, args=args, producer=producer, headers=correlation.headers())


def enqueue_prepare(image_ids: Iterable[UUID]) -> None:
    _send(PREPARE_IMAGE, ([str(i)] for i in image_ids))


def enqueue_methods(jobs: Iterable[tuple[UUID, str]]) -> None:
    _send(RUN_METHOD, ([str(image_id), method] for image_id, method in jobs))


def enqueue_fuse(image_ids: Iterable[UUID]) -> None:
    _send(FUSE_IMAGE, ([str(i)] for i in image_ids))


def enqueue_reconcile(broker_lost_at: datetime) -> None:
    _send(RECONCILE, [[broker_lost_at.isoformat()]])


def enqueue_case_pdf(case_id: UUID) -> None:
    _send(STORE_CASE_PDF, [[str(case_id)]])


def enqueue_webhooks(delivery_ids: Iterable[str]) -> None:
    _send(DELIVER_WEBHOOK, ([i] for i in delivery_ids))
