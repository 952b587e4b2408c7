"""A tenant's webhook endpoints: register, list, change and remove receivers, and the callback secret.

A destination (an endpoint's URL, a case's ``callback_url``) is checked against the SSRF
rules when it is registered, and again at every attempt (:mod:`service.webhooks.delivery`).
"""

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import netguard
from service.errors import NotFound
from service.models import Tenant, WebhookEndpoint
from service.settings import get_settings
from service.tenants import new_webhook_secret

CASE_EVENTS = ("case.completed", "case.failed")
EVENT_TYPES = (*CASE_EVENTS, "image.completed")


class WebhookError(ValueError):
    """Invalid endpoint parameters (unknown event type, unsafe URL)."""


def check_destination(url: str) -> None:
    """Raise :class:`netguard.UnsafeURL` unless ``url`` may receive webhooks (resolves the name: blocking)."""
    netguard.check_url(url, get_settings().webhook_allowlist)


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


def subscribed(session: Session, tenant_id: uuid.UUID, event_type: str) -> list[WebhookEndpoint]:
    """The tenant's enabled endpoints that want ``event_type``."""
    endpoints = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.enabled.is_(True))
    )
    return [e for e in endpoints if event_type in e.event_types]


def callback_secret(session: Session, tenant_id: uuid.UUID) -> str:
    """The secret signing the deliveries to the tenant's cases' ``callback_url``s."""
    return session.get_one(Tenant, tenant_id).callback_secret
