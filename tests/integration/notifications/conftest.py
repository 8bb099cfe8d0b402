"""Each notifier test gets its own database: the notifier reads every transition in it."""

from __future__ import annotations

import pytest

from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore


@pytest.fixture
def own_lifecycle(queue: EventQueue, fresh_store: EventStore) -> EventLifecycle:
    return EventLifecycle(queue, fresh_store)
