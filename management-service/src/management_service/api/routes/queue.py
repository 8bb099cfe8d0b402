"""The queue: its counters and live events (reads), and removing or adding events (API key)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Response, status

from management_service.api.deps import (
    AUTH_RESPONSES,
    AccountsDep,
    ApiKeyRequired,
    LifecycleDep,
    QueueDep,
    SettingsDep,
)
from management_service.api.errors import invalid_input
from management_service.models import (
    EnqueueRequest,
    EnqueueResponse,
    ErrorResponse,
    QueuedEventResponse,
    QueueStatusResponse,
    RemovedEventResponse,
    RetryResponse,
    events_by_class,
)
from management_service.submissions import ENQUEUE_MESSAGE, LiveNotConfirmed, UnknownAccount, submit_by_hand
from rebalancer_shared.queue import (
    EnqueueOutcome,
    EventNotQueuedError,
    EventProcessingError,
    QueuedEventView,
    RetryNowOutcome,
)

router = APIRouter(prefix="/queue", tags=["queue"])
REMOVED_DETAIL = "removed by an operator through the management API"
RETRY_DETAIL = "retry requested by an operator through the management API"
_RETRY_MESSAGE = {
    RetryNowOutcome.REQUEUED: "the event runs again as soon as a worker is free",
    RetryNowOutcome.QUEUED: "the event is already queued: it runs as soon as a worker is free",
}

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "Redis or PostgreSQL unavailable."}
}
# A coalesced trigger is accepted work (the running event runs once more), a duplicate is not.
_ENQUEUE_STATUS = {
    EnqueueOutcome.QUEUED: status.HTTP_201_CREATED,
    EnqueueOutcome.ALREADY_ACCEPTED: status.HTTP_201_CREATED,
    EnqueueOutcome.COALESCED: status.HTTP_202_ACCEPTED,
    EnqueueOutcome.DUPLICATE: status.HTTP_409_CONFLICT,
}


@router.get("/status", response_model=QueueStatusResponse, responses=_UNAVAILABLE, summary="Queue counters")
async def get_queue_status(queue: QueueDep) -> QueueStatusResponse:
    """Queue length, live, processing and waiting events (per state and failure class), retries and
    the oldest age (no scan)."""
    stats = await queue.stats()
    return QueueStatusResponse(
        queue_length=stats.queue_length,
        active_events_count=stats.active_events_count,
        oldest_event_age_seconds=stats.oldest_event_age_seconds,
        events_with_retries=stats.events_with_retries,
        processing_count=stats.processing_count,
        retrying_count=stats.retrying_count,
        scheduled_count=stats.scheduled_count,
        needs_attention_count=stats.needs_attention_count,
        events_by_class=events_by_class(stats),
    )


@router.get(
    "/events", response_model=list[QueuedEventResponse], responses=_UNAVAILABLE, summary="Live events"
)
async def list_queued_events(
    queue: QueueDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[QueuedEventResponse]:
    """Live events (queued, processing, retrying, scheduled, needs_attention), oldest first, with retry
    counts, last errors, failure classes and due times."""
    return [_queued_event(view) for view in await queue.list_events(limit)]


def _queued_event(view: QueuedEventView) -> QueuedEventResponse:
    return QueuedEventResponse(
        event_id=view.event.event_id,
        account_id=view.event.account_id,
        exec_command=view.event.exec_command,
        times_queued=view.event.times_queued,
        created_at=view.event.created_at,
        data=view.event.data,
        source=view.event.source,
        state=view.state,
        rerun=view.rerun,
        last_error=view.last_error,
        failure_class=view.failure_class,
        due_at=view.due_at,
    )


@router.post(
    "/events/{event_id}/retry",
    response_model=RetryResponse,
    dependencies=[ApiKeyRequired],
    summary="Retry a waiting event now",
    responses={
        **AUTH_RESPONSES,
        404: {"model": ErrorResponse, "description": "The event is not in the queue."},
        409: {"model": ErrorResponse, "description": "The event is being processed."},
    },
)
async def retry_event(event_id: uuid.UUID, lifecycle: LifecycleDep) -> RetryResponse:
    """Make a retrying, scheduled or needs-attention event due now (it joins the back of the queue).

    A live rebalance outside the trading window is scheduled again by the processor, without a run."""
    with _queue_errors():
        outcome = await lifecycle.retry_now(str(event_id), RETRY_DETAIL)
    return RetryResponse(event_id=event_id, outcome=outcome, message=_RETRY_MESSAGE[outcome])


@router.delete(
    "/events/{event_id}",
    response_model=RemovedEventResponse,
    dependencies=[ApiKeyRequired],
    summary="Remove a waiting event",
    responses={
        **AUTH_RESPONSES,
        404: {"model": ErrorResponse, "description": "The event is not in the queue."},
        409: {"model": ErrorResponse, "description": "The event is being processed."},
    },
)
async def delete_queued_event(event_id: uuid.UUID, lifecycle: LifecycleDep) -> RemovedEventResponse:
    """Remove the event and its dedup key in one step, and record the removal in its history."""
    with _queue_errors():
        event = await lifecycle.remove(str(event_id), REMOVED_DETAIL)
    return RemovedEventResponse(
        event_id=event.event_id,
        account_id=event.account_id,
        exec_command=event.exec_command,
        times_queued=event.times_queued,
    )


@router.post(
    "/events",
    response_model=EnqueueResponse,
    status_code=status.HTTP_201_CREATED,
    dependencies=[ApiKeyRequired],
    summary="Add an event by hand",
    responses={
        **AUTH_RESPONSES,
        400: {"model": ErrorResponse, "description": "The body cannot be read (not UTF-8 text)."},
        202: {"model": EnqueueResponse, "description": "Coalesced: the event is processing; runs once more."},
        403: {"model": ErrorResponse, "description": "A live rebalance without `X-Allow-Live: true`."},
        409: {"model": EnqueueResponse, "description": "Duplicate of a queued event (its `event_id`)."},
    },
)
async def add_event(
    body: EnqueueRequest,
    lifecycle: LifecycleDep,
    accounts: AccountsDep,
    settings: SettingsDep,
    response: Response,
    x_allow_live: Annotated[
        str | None, Header(alias="X-Allow-Live", description="`true` to allow a live `rebalance`.")
    ] = None,
) -> EnqueueResponse:
    """Queue an event through the same atomic dedup as the broker (source `api`)."""
    try:
        result = await submit_by_hand(
            lifecycle,
            accounts,
            body.to_event(),
            allow_live=x_allow_live,
            enforce_live_guard=settings.management.enforce_live_guard,
        )
    except UnknownAccount as exc:
        raise invalid_input(("body", "account_id"), "unknown_account", str(exc), body.account_id) from exc
    except LiveNotConfirmed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    response.status_code = _ENQUEUE_STATUS[result.outcome]
    return EnqueueResponse(
        event_id=uuid.UUID(result.event_id),
        outcome=result.outcome,
        message=ENQUEUE_MESSAGE[result.outcome],
    )


@contextlib.contextmanager
def _queue_errors() -> Iterator[None]:
    """An event not in the queue answers 404; one being processed 409 (remove and retry alike)."""
    try:
        yield
    except EventNotQueuedError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except EventProcessingError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
