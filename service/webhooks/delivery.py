"""One attempt of one webhook delivery: signed, sent to the checked address, then done or scheduled again.

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
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from service import metrics, netguard
from service.db import session_scope
from service.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from service.settings import get_settings
from service.webhooks.endpoints import callback_secret

logger = logging.getLogger(__name__)

#: Longest wait a receiver's Retry-After may impose.
MAX_RETRY_AFTER = 24 * 3600
USER_AGENT = "image-forensics-webhooks/1"


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
