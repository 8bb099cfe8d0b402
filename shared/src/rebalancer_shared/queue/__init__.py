"""The Redis working queue: atomic dedup, FIFO claims under leases, waiting states, wake-ups of idle
workers, the account lock."""

from rebalancer_shared.queue.account_lock import AccountLock
from rebalancer_shared.queue.event_queue import (
    EventNotQueuedError,
    EventProcessingError,
    EventQueue,
    LeaseLostError,
    QueueError,
)
from rebalancer_shared.queue.keys import QueueKeys
from rebalancer_shared.queue.lease_fence import LeaseExpiredError, LeaseFence, fence_margin
from rebalancer_shared.queue.models import (
    Claim,
    CompleteOutcome,
    CompleteResult,
    EnqueueOutcome,
    EnqueueResult,
    EventState,
    FailResult,
    QueuedEventView,
    QueueStats,
    Reaped,
    Removed,
    RestoreOutcome,
    RestoreResult,
    RetryNowOutcome,
    Wait,
)
from rebalancer_shared.queue.wakeup import ClaimWakeup

__all__ = [
    "AccountLock",
    "Claim",
    "ClaimWakeup",
    "CompleteOutcome",
    "CompleteResult",
    "EnqueueOutcome",
    "EnqueueResult",
    "EventNotQueuedError",
    "EventProcessingError",
    "EventQueue",
    "EventState",
    "FailResult",
    "LeaseExpiredError",
    "LeaseFence",
    "LeaseLostError",
    "QueueError",
    "QueueKeys",
    "QueueStats",
    "QueuedEventView",
    "Reaped",
    "Removed",
    "RestoreOutcome",
    "RestoreResult",
    "RetryNowOutcome",
    "Wait",
    "fence_margin",
]
