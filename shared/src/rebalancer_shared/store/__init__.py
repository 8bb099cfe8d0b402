"""The PostgreSQL (or SQLite, for the demo) history of events, runs and orders."""

from rebalancer_shared.store.event_store import (
    FINISHED,
    UNFINISHED,
    EventStatus,
    EventStore,
    OrderRecord,
    RunRecord,
    Transition,
    async_database_url,
)

__all__ = [
    "FINISHED",
    "UNFINISHED",
    "EventStatus",
    "EventStore",
    "OrderRecord",
    "RunRecord",
    "Transition",
    "async_database_url",
]
