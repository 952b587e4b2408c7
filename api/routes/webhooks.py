"""Webhooks: the tenant's endpoints, the callback secret, the delivery log and redelivery."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool

from api.deps import PrincipalDep, SessionDep
from api.idempotency import Idempotent
from api.problems import Problem
from api.schemas import (
    CallbackSecret,
    WebhookDeliveryList,
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointList,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
)
from service import idempotency, netguard
from service.webhooks import endpoints, outbox

#: A delivery's id, as :func:`service.webhooks.outbox.new_message_id` makes it.
DeliveryId = Annotated[str, PathParam(pattern=r"^msg_[0-9a-f]{32}$", description="msg_ and 32 hex digits")]

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("/endpoints", status_code=201, response_model=WebhookEndpointPublic)
async def create_endpoint(
    request: Request, body: WebhookEndpointCreate, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Register a receiver (URL checked against the SSRF rules) for some event types; returns its whsec_ secret.
    Honours `Idempotency-Key`."""
    idem = await Idempotent.start(request, principal, "POST /v1/webhooks/endpoints")
    try:
        if (replay := idem.replay(idempotency.fingerprint(body.model_dump()))) is not None:
            return replay
        try:
            endpoint = await run_in_threadpool(
                endpoints.create_endpoint,
                session,
                principal.tenant_id,
                url=body.url,
                event_types=body.event_types,
                description=body.description,
            )
        except netguard.UnsafeURL as exc:
            raise Problem("UNSAFE_URL", str(exc)) from None
        except endpoints.WebhookError as exc:
            raise Problem("BAD_REQUEST", str(exc)) from None
        public = WebhookEndpointPublic.model_validate(endpoint, from_attributes=True)
        response = Response(public.model_dump_json(), status_code=201, media_type="application/json")
        return await idem.store(response, {})
    finally:
        await idem.close()


@router.patch("/endpoints/{endpoint_id}", response_model=WebhookEndpointPublic)
async def update_endpoint(
    endpoint_id: UUID, body: WebhookEndpointUpdate, principal: PrincipalDep, session: SessionDep
) -> WebhookEndpointPublic:
    """Change an endpoint's URL (checked again), event types or description, or enable it again after a 410."""
    try:
        endpoint = await run_in_threadpool(
            endpoints.update_endpoint, session, principal.tenant_id, endpoint_id, **body.model_dump(exclude_unset=True)
        )
    except netguard.UnsafeURL as exc:
        raise Problem("UNSAFE_URL", str(exc)) from None
    except endpoints.WebhookError as exc:
        raise Problem("BAD_REQUEST", str(exc)) from None
    return WebhookEndpointPublic.model_validate(endpoint, from_attributes=True)


@router.get("/endpoints", response_model=WebhookEndpointList)
def list_endpoints(principal: PrincipalDep, session: SessionDep) -> WebhookEndpointList:
    """The tenant's webhook endpoints."""
    return WebhookEndpointList(
        data=[WebhookEndpointPublic.model_validate(e, from_attributes=True) for e in endpoints.list_endpoints(session, principal.tenant_id)]
    )


@router.get("/endpoints/{endpoint_id}", response_model=WebhookEndpointPublic)
def get_endpoint(endpoint_id: UUID, principal: PrincipalDep, session: SessionDep) -> WebhookEndpointPublic:
    """One endpoint, with its secret and whether it is enabled (410 Gone from the receiver disables it)."""
    return WebhookEndpointPublic.model_validate(endpoints.get_endpoint(session, principal.tenant_id, endpoint_id), from_attributes=True)


@router.delete("/endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(endpoint_id: UUID, principal: PrincipalDep, session: SessionDep) -> Response:
    """Remove an endpoint and its pending deliveries."""
    endpoints.delete_endpoint(session, principal.tenant_id, endpoint_id)
    return Response(status_code=204)


@router.get("/callback-secret", response_model=CallbackSecret)
def get_callback_secret(principal: PrincipalDep, session: SessionDep) -> CallbackSecret:
    """The whsec_ secret that signs deliveries to the cases' callback_url."""
    return CallbackSecret(secret=endpoints.callback_secret(session, principal.tenant_id))


@router.get("/deliveries", response_model=WebhookDeliveryList)
def list_deliveries(
    principal: PrincipalDep,
    session: SessionDep,
    case_id: UUID | None = None,
    status: Annotated[str | None, Query(pattern="^(pending|delivering|delivered|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> WebhookDeliveryList:
    """The delivery log, newest first, with every attempt (filter by case or status)."""
    rows = outbox.list_deliveries(session, principal.tenant_id, case_id=case_id, status=status, limit=limit)
    return WebhookDeliveryList(data=[WebhookDeliveryPublic.model_validate(d, from_attributes=True) for d in rows])


@router.get("/deliveries/{delivery_id}", response_model=WebhookDeliveryPublic)
def get_delivery(delivery_id: DeliveryId, principal: PrincipalDep, session: SessionDep) -> WebhookDeliveryPublic:
    """One delivery and its attempts."""
    return WebhookDeliveryPublic.model_validate(outbox.get_delivery(session, principal.tenant_id, delivery_id), from_attributes=True)


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202, response_model=WebhookDeliveryPublic)
def redeliver(delivery_id: DeliveryId, principal: PrincipalDep, session: SessionDep) -> WebhookDeliveryPublic:
    """Send the same message (same webhook-id) again now, with a fresh retry schedule."""
    delivery = outbox.redeliver(session, principal.tenant_id, delivery_id)
    outbox.enqueue([delivery.id])
    return WebhookDeliveryPublic.model_validate(delivery, from_attributes=True)
