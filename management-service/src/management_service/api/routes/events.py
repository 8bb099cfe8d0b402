"""GET /events/{event_id}: one event's whole history from PostgreSQL."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from management_service.api.deps import StoreDep
from management_service.history import event_history
from management_service.models import ErrorResponse, EventHistoryResponse

router = APIRouter(prefix="/events", tags=["events"])


@router.get(
    "/{event_id}",
    response_model=EventHistoryResponse,
    summary="An event's history",
    responses={
        404: {"model": ErrorResponse, "description": "No event has this id."},
        503: {"model": ErrorResponse, "description": "PostgreSQL unavailable."},
    },
)
async def get_event_history(event_id: uuid.UUID, store: StoreDep) -> EventHistoryResponse:
    """Transitions (with each retry's error), runs (equity, plan, result, error) and their orders."""
    history = await event_history(store, event_id)
    if history is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"event {event_id} is unknown")
    return history
