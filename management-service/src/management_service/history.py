"""An event's history as the API shows it: the store's views, with each run's orders inside the run."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from management_service.models import (
    EventHistoryResponse,
    EventRecord,
    OrderRecordResponse,
    RunDetail,
    RunRecordResponse,
    TransitionRecord,
)
from rebalancer_shared.store import EventHistory, EventStore, OrderView, RunView


def run_response(run: RunView, orders: Sequence[OrderView]) -> RunRecordResponse:
    """A run as the API shows it, with the orders it placed."""
    return RunRecordResponse(
        run_id=run.run_id,
        attempt=run.attempt,
        execution_mode=run.execution_mode,
        worker=run.worker,
        status=run.status,
        message=run.message,
        error=run.error,
        equity_info=run.equity_info,
        plan=run.plan,
        result=run.result,
        started_at=run.started_at,
        finished_at=run.finished_at,
        orders=[OrderRecordResponse.model_validate(order) for order in orders],
    )


def run_detail(run: RunView, orders: Sequence[OrderView]) -> RunDetail:
    """A run with its orders, the event it ran for and the account it traded."""
    return RunDetail(
        **run_response(run, orders).model_dump(),
        event_id=run.event_id,
        account_id=run.account_id,
        exec_command=run.exec_command.value,
    )


def history_response(history: EventHistory) -> EventHistoryResponse:
    """Shape `EventStore.history`: orders grouped under the run that placed them."""
    return EventHistoryResponse(
        event=EventRecord.model_validate(history.event),
        transitions=[TransitionRecord.model_validate(t) for t in history.transitions],
        runs=[run_response(run, history.orders_of(run.run_id)) for run in history.runs],
    )


async def event_history(store: EventStore, event_id: uuid.UUID) -> EventHistoryResponse | None:
    """The event's life from PostgreSQL, or None when no event has this id."""
    history = await store.history(event_id)
    return None if history is None else history_response(history)
