"""``GET /metrics``: the service's Prometheus metrics, for the bearer of ``FORENSICS_METRICS_TOKEN``."""

import secrets

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import SettingsDep
from api.problems import Problem
from service.metrics import ServiceCollector, exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus text format: every API process's and (on this machine) worker process's
    counters, and the service's state read now. 404 while no token is set, 401 without it."""
    if not settings.metrics_token:
        raise Problem("NOT_FOUND", "metrics are not served: FORENSICS_METRICS_TOKEN is not set")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), settings.metrics_token.encode()):
        raise Problem("UNAUTHORIZED", "send the metrics token as 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    return Response(exposition(ServiceCollector()), media_type=CONTENT_TYPE_LATEST)
