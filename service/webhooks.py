"""Webhooks per the Standard Webhooks specification (https://www.standardwebhooks.com).

Events: ``case.completed``, ``case.failed`` (to the case's ``callback_url`` and to the
tenant's endpoints subscribed to them) and the opt-in ``image.completed`` (endpoints only).

At-least-once through an outbox: :func:`add_case_event` / :func:`add_image_event` write one
:class:`WebhookDelivery` row per destination in the caller's transaction, the one that
changes the state, so an event exists exactly when its state change does. After the
commit the caller enqueues :func:`deliver`; the beat's :func:`dispatch_due` sends whatever
is due (retries, messages lost in a crash) and re-opens deliveries whose worker died.

Each attempt re-checks the URL against the SSRF rules and connects to the checked address
(:mod:`service.netguard`); the body is signed with the destination's ``whsec_`` secret and
sent with ``webhook-id`` (the same on every attempt and redelivery), ``webhook-timestamp``
and ``webhook-signature``. Only 2xx is success; redirects are failures; 410 disables the
endpoint; other failures are retried after the delays of ``FORENSICS_WEBHOOK_RETRY_SCHEDULE``
(spread by ``FORENSICS_WEBHOOK_JITTER``, never before ``Retry-After``), then the delivery
is ``failed``.
"""

import email.utils
import json
import logging
import random
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from service import metrics, netguard, queue
from service.db import session_scope
from service.models import (
    Case,
    DeliveryStatus,
    Image,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from service.settings import get_settings
from service.tenants import new_webhook_secret

logger = logging.getLogger(__name__)

CASE_EVENTS = ("case.completed", "case.failed")
EVENT_TYPES = (*CASE_EVENTS, "image.completed")
#: Longest wait a receiver's Retry-After may impose.
MAX_RETRY_AFTER = 24 * 3600
USER_AGENT = "image-forensics-webhooks/1"


class WebhookError(ValueError):
    """Invalid endpoint parameters (unknown event type, unsafe URL)."""


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def check_destination(url: str) -> None:
    """Raise :class:`netguard.UnsafeURL` unless ``url`` may receive webhooks (registration-time check)."""
    netguard.check_url(url, get_settings().webhook_allowlist)


# ------------------------------------------------------------------------------- endpoints


def _check_event_types(event_types: list[str]) -> None:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown or not event_types:
        raise WebhookError(f"event_types must be a non-empty subset of {list(EVENT_TYPES)}; unknown: {unknown}")


def create_endpoint(
    session: Session, tenant_id: uuid.UUID, *, url: str, event_types: list[str], description: str | None
) -> WebhookEndpoint:
    _check_event_types(event_types)
    check_destination(url)
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        url=url,
        secret=new_webhook_secret(),
        event_types=sorted(set(event_types)),
        description=description,
        enabled=True,
    )
    session.add(endpoint)
    session.commit()
    return endpoint


def list_endpoints(session: Session, tenant_id: uuid.UUID) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id).order_by(WebhookEndpoint.created_at)))


def get_endpoint(session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    from service.cases import NotFound

    endpoint = session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id)
    )
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def update_endpoint(
    session: Session,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    endpoint = get_endpoint(session, tenant_id, endpoint_id)
    if url is not None:
        check_destination(url)
        endpoint.url = url
    if event_types is not None:
        _check_event_types(event_types)
        endpoint.event_types = sorted(set(event_types))
    if description is not None:
        endpoint.description = description
    if enabled is not None:
        endpoint.enabled = enabled
        endpoint.disabled_reason = None if enabled else "disabled by the tenant"
    session.commit()
    return endpoint


def delete_endpoint(session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    session.delete(get_endpoint(session, tenant_id, endpoint_id))
    session.commit()


def callback_secret(session: Session, tenant_id: uuid.UUID) -> str:
    return session.get_one(Tenant, tenant_id).callback_secret


# ------------------------------------------------------------------------------- outbox


def _links(case_id: uuid.UUID) -> dict[str, str]:
    base = get_settings().public_base_url.rstrip("/")
    return {"case": f"{base}/v1/cases/{case_id}", "report": f"{base}/v1/cases/{case_id}/report.zip"}


def _subscribed(session: Session, tenant_id: uuid.UUID, event_type: str) -> list[WebhookEndpoint]:
    endpoints = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.enabled.is_(True))
    )
    return [e for e in endpoints if event_type in e.event_types]


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
    destinations: list[tuple[uuid.UUID | None, str]] = [(e.id, e.url) for e in _subscribed(session, tenant_id, event_type)]
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
    destinations: list[tuple[uuid.UUID | None, str]] = [(e.id, e.url) for e in _subscribed(session, tenant_id, "image.completed")]
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


# ------------------------------------------------------------------------------- delivery


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def next_delay(attempts: int, retry_after: float | None) -> float | None:
    """Seconds before the next attempt after ``attempts`` failed ones; None when the schedule is exhausted."""
    settings = get_settings()
    schedule = settings.webhook_retry_schedule
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts] * (1 + random.uniform(-settings.webhook_jitter, settings.webhook_jitter))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def sign(secret: str, message_id: str, when: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of ``body``."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, when, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def deliver(delivery_id: str) -> str | None:
    """One attempt of a due delivery; returns its new status, or None when it was not due (or is taken)."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as session:
        claimed = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(status=DeliveryStatus.DELIVERING, claimed_at=now)
        ).rowcount
        session.commit()
        if not claimed:
            return None
        delivery = session.get_one(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery.endpoint_id else None
        if delivery.endpoint_id is not None and (endpoint is None or not endpoint.enabled):
            return _finish(session, delivery, DeliveryStatus.FAILED, None, "the endpoint is disabled or deleted", 0.0)
        secret = endpoint.secret if endpoint is not None else callback_secret(session, delivery.tenant_id)
        body = json.dumps(delivery.payload, separators=(",", ":"))
        start = time.perf_counter()
        status_code: int | None = None
        retry_after: float | None = None
        try:
            target = netguard.check_url(delivery.url, settings.webhook_allowlist)
            response = netguard.post(
                target, content=body.encode(), headers=sign(secret, delivery.id, datetime.now(UTC), body), timeout=settings.webhook_timeout
            )
            status_code = response.status_code
            retry_after = _retry_after(response)
            error = None if 200 <= status_code < 300 else f"the receiver answered {status_code}"
        except netguard.UnsafeURL as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        if error is None:
            return _finish(session, delivery, DeliveryStatus.DELIVERED, status_code, None, seconds)
        if status_code == 410:
            if endpoint is not None:
                endpoint.enabled = False
                endpoint.disabled_reason = f"the receiver answered 410 Gone on {utcnow():%Y-%m-%d %H:%M} UTC"
            return _finish(session, delivery, DeliveryStatus.FAILED, status_code, error + " (410 Gone: not retried)", seconds)
        delay = next_delay(delivery.attempts + 1, retry_after)
        if delay is None:
            return _finish(session, delivery, DeliveryStatus.FAILED, status_code, error, seconds)
        return _finish(session, delivery, DeliveryStatus.PENDING, status_code, error, seconds, delay=delay)


def _finish(
    session: Session,
    delivery: WebhookDelivery,
    status: DeliveryStatus,
    status_code: int | None,
    error: str | None,
    seconds: float,
    *,
    delay: float | None = None,
) -> str:
    now = utcnow()
    delivery.attempts += 1
    delivery.status = status
    delivery.last_status_code = status_code
    delivery.last_error = error
    delivery.claimed_at = None
    delivery.next_attempt_at = now + timedelta(seconds=delay) if delay is not None else None
    if status == DeliveryStatus.DELIVERED:
        delivery.delivered_at = now
    session.add(WebhookAttempt(id=uuid.uuid4(), delivery_id=delivery.id, attempted_at=now, status_code=status_code, error=error, seconds=seconds))
    session.commit()
    metrics.WEBHOOK_ATTEMPTS.labels(delivery.event_type, "retrying" if status == DeliveryStatus.PENDING else status.value).inc()
    log = logger.info if status == DeliveryStatus.DELIVERED else logger.warning
    log("webhook %s (%s) to %s: %s after attempt %d%s", delivery.id, delivery.event_type, delivery.url, status,
        delivery.attempts, f" ({error})" if error else "")
    return status


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


# ------------------------------------------------------------------------------- log


def list_deliveries(
    session: Session, tenant_id: uuid.UUID, *, case_id: uuid.UUID | None = None, status: str | None = None, limit: int = 100
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
    if case_id is not None:
        query = query.where(WebhookDelivery.case_id == case_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query.order_by(WebhookDelivery.created_at.desc()).limit(limit)))


def get_delivery(session: Session, tenant_id: uuid.UUID, delivery_id: str) -> WebhookDelivery:
    from service.cases import NotFound

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
