"""The history's events from PostgreSQL: GET /events (filtered, newest first, a page at a time) and
GET /events/{event_id} (one event's whole history)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from management_service.api.deps import StoreDep
from management_service.api.errors import PG_UNAVAILABLE
from management_service.api.paging import PagingDep, TimeRangeDep
from management_service.history import event_history
from management_service.models import ErrorResponse, EventHistoryResponse, EventPage, EventRecord
from rebalancer_shared.events import ACCOUNT_ID_PATTERN, Command, EventSource
from rebalancer_shared.store import EventFilter, EventStatus, PageKey

router = APIRouter(prefix="/events", tags=["events"])


@router.get("", response_model=EventPage, summary="The history's events", responses=PG_UNAVAILABLE)
async def list_events(
    store: StoreDep,
    accepted: TimeRangeDep,
    paging: PagingDep,
    account_id: Annotated[str | None, Query(max_length=64, pattern=ACCOUNT_ID_PATTERN)] = None,
    command: Command | None = None,
    state: EventStatus | None = None,
    source: EventSource | None = None,
) -> EventPage:
    """Every event the history keeps, finished ones included, newest first, filtered by account,
    command, state, source and the time it was accepted (`since`, `until`); `next_cursor` leads to
    the next (older) page."""
    where = EventFilter(
        account_id=account_id,
        exec_command=command.value if command else None,
        status=state.value if state else None,
        source=source.value if source else None,
        accepted=accepted,
    )
    found = await store.list_events(where, paging.limit + 1, paging.after(uuid.UUID))
    page, next_cursor = paging.cut(found, lambda e: PageKey(e.created_at, e.event_id))
    return EventPage(events=[EventRecord.model_validate(e) for e in page], next_cursor=next_cursor)


@router.get(
    "/{event_id}",
    response_model=EventHistoryResponse,
    summary="An event's history",
    responses={404: {"model": ErrorResponse, "description": "No event has this id."}, **PG_UNAVAILABLE},
)
async def get_event_history(event_id: uuid.UUID, store: StoreDep) -> EventHistoryResponse:
    """Transitions (with each retry's error), runs (equity, plan, result, error) and their orders."""
    history = await event_history(store, event_id)
    if history is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"event {event_id} is unknown")
    return history
