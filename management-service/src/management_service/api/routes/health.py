"""GET /health: is the product able to take and run events right now (rules in management_service.health)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from management_service.api.deps import HealthPolicyDep, QueueDep, StoreDep
from management_service.health import check_health
from management_service.models import HealthResponse

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="System health",
    responses={
        503: {
            "model": HealthResponse,
            "description": "Unhealthy (events with retries, stale or missing heartbeat) or a server is down.",
        }
    },
)
async def get_health(
    queue: QueueDep, store: StoreDep, policy: HealthPolicyDep, response: Response
) -> HealthResponse:
    """200 when healthy; 503 with the same body, saying why, when not."""
    report = await check_health(queue, store, policy)
    if not report.healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return report
