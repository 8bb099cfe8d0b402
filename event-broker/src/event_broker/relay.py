"""Turning each received Ably message into queued events, once.

For one message: skip it if its Ably id was already turned into events (`P:ably:seen:{id}`); map it
to one event per account on its channel (`intake.events_for_message`); submit each event through
`EventLifecycle.submit` (queue with dedup, history, counters, outcome logged with event_id,
account_id and command); only then remember the id, with a TTL longer than any catch-up window.

Why remember the id *after* submitting: an event broker killed between the two re-reads the message
on its next catch-up (rewind) and submits it again. The events of a message have ids derived from
the message id and the account (`intake.event_id_for`), so the copies are the same events: the
queue recognises them, live or finished within a day, and nothing runs twice (`ALREADY_ACCEPTED`).
The other order, remembering first, would lose the trigger in that window.

Redis and PostgreSQL writes go through `OutageRetry`: an outage, or a server too busy to write (a
Redis out of memory or read-only, a full connection pool), holds the message in memory and keeps
retrying, loudly, instead of dropping it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

import structlog
from redis.asyncio import Redis

from event_broker.intake import MessageIntake, ReceivedMessage, events_for_message
from event_broker.retry import OutageRetry
from rebalancer_shared.accounts import Account
from rebalancer_shared.events import Event
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EnqueueResult

log = structlog.get_logger(__name__)


class RelayOutcome(StrEnum):
    """What handling one message did."""

    SUBMITTED = "submitted"
    ALREADY_HANDLED = "already_handled"
    UNFOLLOWED = "unfollowed"


class TriggerRelay:
    """Handles messages one at a time: dedup by Ably message id, map, submit, remember."""

    def __init__(
        self,
        lifecycle: EventLifecycle,
        accounts_by_channel: Mapping[str, Sequence[Account]],
        *,
        seen_ttl_seconds: int,
        retry: OutageRetry | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._queue = lifecycle.queue
        self._accounts = accounts_by_channel
        self._seen_ttl_seconds = seen_ttl_seconds
        self.retry = retry or OutageRetry()

    @property
    def _redis(self) -> Redis:
        return self._queue.redis

    async def handle(self, message: ReceivedMessage) -> RelayOutcome:
        """Turn one message into its events unless that was done before; see the module docstring."""
        bound = log.bind(ably_message_id=message.message_id, channel=message.channel, name=message.name)
        message_id = message.message_id
        if message_id is not None and await self._was_handled(message_id):
            bound.info("ably message already turned into events: skipped")
            return RelayOutcome.ALREADY_HANDLED
        intake = events_for_message(message, self._accounts.get(message.channel, ()))
        _log_intake(bound, intake)
        if not intake.followed:
            return RelayOutcome.UNFOLLOWED
        for event in intake.events:
            await self._submit(event)
        if message_id is None:
            bound.warning("ably message has no id: it cannot be recognised if it is delivered again")
        else:
            await self._remember(message_id)
        return RelayOutcome.SUBMITTED

    async def _was_handled(self, message_id: str) -> bool:
        key = self._queue.keys.ably_seen(message_id)
        return bool(await self.retry.run("check ably message id", lambda: self._redis.exists(key)))

    async def _submit(self, event: Event) -> EnqueueResult:
        # Re-submitting the same event after a failure is safe: the queue recognises its id.
        return await self.retry.run(f"submit event {event.event_id}", lambda: self._lifecycle.submit(event))

    async def _remember(self, message_id: str) -> None:
        key = self._queue.keys.ably_seen(message_id)
        ttl = self._seen_ttl_seconds
        await self.retry.run("remember ably message id", lambda: self._redis.set(key, "1", nx=True, ex=ttl))


def _log_intake(bound: structlog.stdlib.BoundLogger, intake: MessageIntake) -> None:
    decision = intake.decision
    if not intake.followed:
        bound.warning("ably message on a channel no account follows: dropped")
        return
    if decision.note is not None:
        bound.warning("trigger is a dry run", command=decision.command.value, note=decision.note)
    for rejected in intake.rejected:
        bound.error(
            "no event for this account: it cannot be expressed as an event",
            account_id=rejected.account_id,
            reason=rejected.reason,
        )
    bound.info(
        "ably message received",
        command=decision.command.value,
        accounts=[event.account_id for event in intake.events],
    )
