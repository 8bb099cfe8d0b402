"""The event broker's `OutageRetry`: transient write errors are retried in rounds, loudly, forever."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions
import sqlalchemy.exc
from structlog.testing import capture_logs

from event_broker.retry import OutageRetry, RetryPolicy, WritesAbandonedError

QUICK = RetryPolicy(attempts=3, first_delay_seconds=0.001, max_delay_seconds=0.002, round_pause_seconds=0.005)
NOT_QUEUED = "trigger is NOT queued yet"


class FailingWrite:
    """A write that raises `error` for its first `failures` calls, then answers "written"."""

    def __init__(self, error: BaseException, failures: int, retry: OutageRetry | None = None) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0
        self.retry = retry
        self.failing_seen: list[bool] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.retry is not None:
            self.failing_seen.append(self.retry.failing)
        if self.calls <= self.failures:
            raise self.error
        return "written"


def test_waits_back_off_within_a_round_then_pause_before_the_next() -> None:
    policy = RetryPolicy()
    assert [policy.wait_after(n) for n in range(1, 10)] == [0.2, 0.4, 0.8, 5.0, 0.2, 0.4, 0.8, 5.0, 0.2]
    capped = RetryPolicy(attempts=6, first_delay_seconds=1.0, max_delay_seconds=3.0, round_pause_seconds=9)
    assert [capped.wait_after(n) for n in range(1, 7)] == [1.0, 2.0, 3.0, 3.0, 3.0, 9]


BUSY = {
    "redis OOM": redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    "redis READONLY": redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    "redis MISCONF": redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots"),
    "redis LOADING": redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    "redis unreachable": redis.exceptions.ConnectionError("Connection refused"),
    "pool timeout": sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
}


@pytest.mark.parametrize("error", BUSY.values(), ids=BUSY.keys())
async def test_a_busy_or_unreachable_server_is_retried_through_several_rounds_until_the_write_succeeds(
    error: BaseException,
) -> None:
    retry = OutageRetry(QUICK)
    write = FailingWrite(error, failures=7, retry=retry)  # two full rounds of 3, and one more

    with capture_logs() as logs:
        assert await retry.run("submit event", write) == "written"

    assert write.calls == 8
    assert write.failing_seen == [False] + [True] * 7
    assert not retry.failing
    assert retry.last_error is None
    loud = [e for e in logs if NOT_QUEUED in e["event"]]
    assert [(e["log_level"], e["rounds"], e["attempts"]) for e in loud] == [("error", 1, 3), ("error", 2, 6)]
    assert {e["operation"] for e in loud} == {"submit event"}
    assert type(error).__name__ in loud[0]["error"]
    quiet = [e for e in logs if e["event"] == "write failed, retrying"]
    assert len(quiet) == 5
    [recovered] = [e for e in logs if e["event"] == "write succeeded after failing"]
    assert recovered["rounds"] == 2


async def test_a_few_failures_within_one_round_are_only_warnings() -> None:
    retry = OutageRetry(QUICK)
    with capture_logs() as logs:
        assert await retry.run("remember", FailingWrite(BUSY["redis OOM"], failures=2)) == "written"

    assert [e["log_level"] for e in logs] == ["warning", "warning"]


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        ValueError("not an event"),
    ],
    ids=["redis WRONGTYPE", "IntegrityError", "ValueError"],
)
async def test_a_permanent_error_goes_to_the_caller_at_once(error: BaseException) -> None:
    retry = OutageRetry(QUICK)
    write = FailingWrite(error, failures=1)

    with pytest.raises(type(error)):
        await retry.run("submit event", write)

    assert write.calls == 1
    assert not retry.failing


async def test_abandon_ends_the_wait_of_a_write_that_keeps_failing() -> None:
    slow = RetryPolicy(attempts=2, first_delay_seconds=60, max_delay_seconds=60, round_pause_seconds=60)
    retry = OutageRetry(slow)
    write = FailingWrite(BUSY["redis unreachable"], failures=10**6)
    task = asyncio.create_task(retry.run("submit event e1", write))
    while not retry.failing:
        await asyncio.sleep(0.001)

    retry.abandon()

    with pytest.raises(WritesAbandonedError, match=r"gave up on 'submit event e1' while stopping.*refused"):
        await asyncio.wait_for(task, 1)
    assert write.calls == 1
