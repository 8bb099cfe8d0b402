"""The Redis working queue: atomic dedup, FIFO claims under leases, retries, the account lock."""

from rebalancer_shared.queue.account_lock import AccountLock
from rebalancer_shared.queue.event_queue import (
    EventNotQueuedError,
    EventProcessingError,
    EventQueue,
    LeaseLostError,
    QueueError,
)
from rebalancer_shared.queue.keys import QueueKeys
from rebalancer_shared.queue.models import (
    Claim,
    CompleteOutcome,
    EnqueueOutcome,
    EnqueueResult,
    EventState,
    QueuedEventView,
    QueueStats,
)

__all__ = [
    "AccountLock",
    "Claim",
    "CompleteOutcome",
    "EnqueueOutcome",
    "EnqueueResult",
    "EventNotQueuedError",
    "EventProcessingError",
    "EventQueue",
    "EventState",
    "LeaseLostError",
    "QueueError",
    "QueueKeys",
    "QueueStats",
    "QueuedEventView",
]
