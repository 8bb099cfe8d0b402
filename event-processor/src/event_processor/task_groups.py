"""Running a run's independent steps together, failing as the first failed step does.

`asyncio.TaskGroup` cancels the other tasks when one fails, which is what a run wants (no read left
running after the run gave up), but it raises an `ExceptionGroup`. The engine's callers and the retry
policy tell failures apart by their type (`BrokerError`, `PlanError`, `WaitForSession`, ...), so
`concurrently` raises the first failure itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def concurrently() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group whose failure is its first failed task's exception, not an exception group."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failed:
        raise _first(failed) from None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
