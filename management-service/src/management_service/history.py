"""An event's history as the API shows it: the store's rows, with each run's orders inside the run."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from management_service.models import EventHistoryResponse
from rebalancer_shared.store import EventStore


def history_view(raw: dict[str, Any]) -> EventHistoryResponse:
    """Shape `EventStore.history` output: orders grouped under the run that placed them."""
    orders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for order in raw["orders"]:
        orders[str(order["run_id"])].append(order)
    runs = [{**run, "orders": orders.get(str(run["run_id"]), [])} for run in raw["runs"]]
    return EventHistoryResponse.model_validate(
        {"event": raw["event"], "transitions": raw["transitions"], "runs": runs}
    )


async def event_history(store: EventStore, event_id: uuid.UUID) -> EventHistoryResponse | None:
    """The event's life from PostgreSQL, or None when no event has this id."""
    raw = await store.history(event_id)
    return None if raw is None else history_view(raw)
