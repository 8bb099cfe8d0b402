"""The history's events from PostgreSQL: GET /events (filtered, newest first, a page at a time) and
GET /events/{event_id} (one event's whole history)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from management_service.api.deps import StoreDep
from management_service.api.errors import PG_UNAVAILABLE, invalid_input
from management_service.cursors import BadCursor, cursor_after, page_key
from management_service.history import event_history
from management_service.models import ErrorResponse, EventHistoryResponse, EventPage, EventRecord, IsoTime
from rebalancer_shared.events import ACCOUNT_ID_PATTERN, Command, EventSource
from rebalancer_shared.store import EventFilter, EventStatus

router = APIRouter(prefix="/events", tags=["events"])
MAX_PAGE = 500


@router.get(
    "",
    response_model=EventPage,
    summary="The history's events",
    responses=PG_UNAVAILABLE,
)
async def list_events(
    store: StoreDep,
    account_id: Annotated[str | None, Query(max_length=64, pattern=ACCOUNT_ID_PATTERN)] = None,
    command: Command | None = None,
    state: EventStatus | None = None,
    source: EventSource | None = None,
    since: Annotated[IsoTime | None, Query(description="Accepted at or after (ISO 8601, with zone).")] = None,
    until: Annotated[IsoTime | None, Query(description="Accepted before (ISO 8601, with zone).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the page before.")] = None,
) -> EventPage:
    """Every event the history keeps, finished ones included, newest first, filtered by account,
    command, state, source and the time it was accepted; `next_cursor` leads to the next (older) page."""
    try:
        after = page_key(cursor) if cursor is not None else None
    except BadCursor as exc:
        raise invalid_input(("query", "cursor"), "bad_cursor", str(exc), cursor) from exc
    where = EventFilter(
        account_id=account_id,
        exec_command=command.value if command else None,
        status=state.value if state else None,
        source=source.value if source else None,
        since=since,
        until=until,
    )
    found = await store.list_events(where, limit + 1, after)
    page = found[:limit]
    next_cursor = cursor_after(page[-1]) if len(found) > limit else None
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
