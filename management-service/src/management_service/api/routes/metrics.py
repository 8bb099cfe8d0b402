"""GET /metrics: Prometheus text, read from Redis at scrape time."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from management_service.api.deps import QueueDep, StoreDep
from management_service.models import ErrorResponse
from management_service.prometheus import render_metrics

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."},
        503: {"model": ErrorResponse, "description": "Redis unavailable."},
    },
)
async def get_metrics(queue: QueueDep, store: StoreDep) -> Response:
    """Queue gauges, the per-command counters of events and orders, the notifications' counters and
    the age of the oldest pending notification."""
    return Response(content=await render_metrics(queue, store), media_type=CONTENT_TYPE_LATEST)
