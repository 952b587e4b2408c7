"""The webhook outbox: events written in the transaction of their state change, sent after its commit.

:func:`add_case_event` / :func:`add_image_event` write one :class:`WebhookDelivery` row per
destination in the caller's transaction, so an event exists exactly when its state change
does. After the commit the caller passes the ids to :func:`enqueue`; the beat's
:func:`dispatch_due` sends whatever is due (retries, messages lost in a crash) and re-opens
deliveries whose worker died mid-attempt. The tenant reads these rows as the delivery log
and may :func:`redeliver` one.
"""

import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from service import queue
from service.db import session_scope
from service.errors import NotFound
from service.models import Case, DeliveryStatus, Image, WebhookDelivery, utcnow
from service.settings import get_settings
from service.webhooks.endpoints import CASE_EVENTS, subscribed

logger = logging.getLogger(__name__)


def new_message_id() -> str:
    """A delivery's id, sent as ``webhook-id`` on every attempt (receivers deduplicate on it)."""
    return f"msg_{uuid.uuid4().hex}"


def _links(case_id: uuid.UUID) -> dict[str, str]:
    base = get_settings().public_base_url.rstrip("/")
    return {"case": f"{base}/v1/cases/{case_id}", "report": f"{base}/v1/cases/{case_id}/report.zip"}


def _add(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    case_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    destinations: list[tuple[uuid.UUID | None, str]],
) -> list[str]:
    now = utcnow()
    payload = {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    delay = timedelta(seconds=get_settings().webhook_retry_schedule[0])
    ids = []
    for endpoint_id, url in destinations:
        delivery = WebhookDelivery(
            id=new_message_id(),
            tenant_id=tenant_id,
            endpoint_id=endpoint_id,
            case_id=case_id,
            url=url,
            event_type=event_type,
            payload=payload,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now + delay,
            created_at=now,
        )
        session.add(delivery)
        ids.append(delivery.id)
    session.flush()
    return ids


def add_case_event(session: Session, case_id: uuid.UUID) -> list[str]:
    """Outbox rows for the case's final status (call in the transaction that set it, before the commit)."""
    case = session.execute(
        select(Case.tenant_id, Case.status, Case.callback_url, Case.label).where(Case.id == case_id)
    ).one()
    tenant_id, status, callback_url, label = case
    event_type = f"case.{status}"
    if tenant_id is None or event_type not in CASE_EVENTS:
        return []
    destinations: list[tuple[uuid.UUID | None, str]] = [(e.id, e.url) for e in subscribed(session, tenant_id, event_type)]
    if callback_url:
        destinations.append((None, callback_url))
    if not destinations:
        return []
    counts = _count_statuses(session, case_id)
    data = {"case_id": str(case_id), "status": status, "label": label, "images": counts, "links": _links(case_id)}
    return _add(session, tenant_id=tenant_id, case_id=case_id, event_type=event_type, data=data, destinations=destinations)


def _count_statuses(session: Session, case_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(select(Image.status, func.count()).where(Image.case_id == case_id).group_by(Image.status)).all()
    return {status: count for status, count in rows}


def add_image_event(session: Session, image_id: uuid.UUID) -> list[str]:
    """Outbox rows for an image that reached ``completed`` or ``failed`` (endpoints that opted in)."""
    row = session.execute(
        select(Case.tenant_id, Image.case_id, Image.status, Image.tamper_score, Image.verdict, Image.error_code)
        .join(Case, Case.id == Image.case_id)
        .where(Image.id == image_id)
    ).one()
    tenant_id, case_id, status, score, verdict, error_code = row
    if tenant_id is None:
        return []
    destinations: list[tuple[uuid.UUID | None, str]] = [(e.id, e.url) for e in subscribed(session, tenant_id, "image.completed")]
    if not destinations:
        return []
    links = _links(case_id)
    links["image"] = f"{links['case']}/images/{image_id}"
    data = {
        "case_id": str(case_id),
        "image_id": str(image_id),
        "status": status,
        "tamper_score": None if score is None else round(score, 1),
        "verdict": verdict,
        "error_code": error_code,
        "links": links,
    }
    return _add(session, tenant_id=tenant_id, case_id=case_id, event_type="image.completed", data=data, destinations=destinations)


def enqueue(delivery_ids: Iterable[str]) -> None:
    """Send the delivery tasks after the commit; a failure only delays them until the next :func:`dispatch_due`."""
    ids = list(delivery_ids)
    if not ids:
        return
    try:
        queue.enqueue_webhooks(ids)
    except Exception:  # the rows are committed; dispatch_due sends them
        logger.exception("could not enqueue %d webhook deliveries; the dispatcher will", len(ids))


def dispatch_due(limit: int = 500) -> list[str]:
    """Enqueue the deliveries that are due, and re-open those whose worker died mid-attempt."""
    settings = get_settings()
    now = utcnow()
    lease = timedelta(seconds=settings.webhook_timeout * 2 + 30)
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == DeliveryStatus.DELIVERING, WebhookDelivery.claimed_at < now - lease)
            .values(status=DeliveryStatus.PENDING, claimed_at=None, next_attempt_at=now)
        )
        # claimed_at on a pending row = "a message was sent at": resend only after a lease, not on every pass
        due = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                    or_(WebhookDelivery.claimed_at.is_(None), WebhookDelivery.claimed_at < now - lease),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )
        if due:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(due)).values(claimed_at=now))
        session.commit()
    enqueue(due)
    return due


def list_deliveries(
    session: Session, tenant_id: uuid.UUID, *, case_id: uuid.UUID | None = None, status: str | None = None, limit: int = 100
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
    if case_id is not None:
        query = query.where(WebhookDelivery.case_id == case_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    query = query.options(selectinload(WebhookDelivery.attempt_log))  # the log shows every attempt: one query, not one per row
    return list(session.scalars(query.order_by(WebhookDelivery.created_at.desc()).limit(limit)))


def get_delivery(session: Session, tenant_id: uuid.UUID, delivery_id: str) -> WebhookDelivery:
    delivery = session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.tenant_id == tenant_id)
    )
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return delivery


def redeliver(session: Session, tenant_id: uuid.UUID, delivery_id: str) -> WebhookDelivery:
    """Send the same message (same ``webhook-id``) again, with a fresh retry schedule."""
    delivery = get_delivery(session, tenant_id, delivery_id)
    if delivery.status == DeliveryStatus.DELIVERING:
        return delivery
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.claimed_at = None
    session.commit()
    return delivery
