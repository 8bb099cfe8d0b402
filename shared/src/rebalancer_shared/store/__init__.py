"""The PostgreSQL (or SQLite, for the demo) history of events, runs and orders."""

from rebalancer_shared.store.event_store import EventRowMissing, EventStore, async_database_url
from rebalancer_shared.store.history_queries import EventFilter, OrderFilter, PageKey, TimeRange
from rebalancer_shared.store.records import (
    FINAL_ORDER_STATUSES,
    FINISHED,
    INTENT,
    STATUS_AFTER,
    UNFINISHED,
    EventStatus,
    HistoryRecord,
    OrderRecord,
    RunRecord,
    RunStatus,
    Transition,
)
from rebalancer_shared.store.views import (
    EventHistory,
    EventSummary,
    ListedOrder,
    OrderView,
    RunView,
    RunWithOrders,
    TransitionView,
)

__all__ = [
    "FINAL_ORDER_STATUSES",
    "FINISHED",
    "INTENT",
    "STATUS_AFTER",
    "UNFINISHED",
    "EventFilter",
    "EventHistory",
    "EventRowMissing",
    "EventStatus",
    "EventStore",
    "EventSummary",
    "HistoryRecord",
    "ListedOrder",
    "OrderFilter",
    "OrderRecord",
    "OrderView",
    "PageKey",
    "RunRecord",
    "RunStatus",
    "RunView",
    "RunWithOrders",
    "TimeRange",
    "Transition",
    "TransitionView",
    "async_database_url",
]
