"""When a queue write counts as done: on the primary alone, or once replicas have it too.

Redis replicates asynchronously: a primary that dies right after a write may take it along, and the
replica Sentinel promotes never saw it. With `Durability.replicas` > 0 every queue script runs in one
round trip with a `WAIT n timeout` after it, on the same connection (WAIT covers the writes of its
own connection), and a write the replicas did not confirm in time is not acknowledged:

- an enqueue (the Ably relay, the API, the CLI) and a restore raise `NotReplicatedError`, so the
  caller tries again (the same event is then answered `already_accepted`, and that answer is itself
  acknowledged only once the replicas have everything before it: the script writes in every path);
- a claim raises it too, so no run starts on a claim a new primary may not know; the event, claimed
  on the primary, returns once its lease expires (the claim is never run twice at once: see below);
- a lease or account-lock renewal that is not confirmed counts as not renewed: the run's fence
  (lease_fence.py) stops it before the lease could have expired on any copy of the data;
- an account lock taken but not confirmed is not used: the run waits and asks again;
- a completion, failure, release or removal that reached the primary stands (it is in the outbox
  and goes to PostgreSQL); if the primary then dies, the reconciliation restores what the new primary
  lacks, and running an event once more is harmless (a rebalance of an account at its targets
  trades nothing).

Which replicas: `n` is `replicas`, or fewer when the primary has fewer replicas connected (INFO
replication, read at most once a second per process). A write waits for every replica that could
take over from the primary, up to `replicas`; a replica that is connected but lags (WAIT times out)
holds every acknowledgement back, while a primary with no replica at all, for instance the promoted
one after its old primary died, goes on alone (with a warning) rather than stopping every trigger
until a replica is back: there is then nothing a failover could promote, and so nothing to lose to
one. A replica that stops answering is dropped by the primary after `repl-timeout` (60 s by
default); from then on the writes go on without it.

`NotReplicatedError` is a NOREPLICAS reply, the error Redis itself gives when `min-replicas-to-write`
is not met: every service already treats it as a busy server (rebalancer_shared.transient), so the
relay keeps the trigger and retries, the API answers 503 and the processor retries the step.

A Redis Cluster client cannot WAIT here yet (the WAIT must go to the primary of the queue's slot on
the connection of the write; redis-py's cluster pipeline sends keyless commands elsewhere), so with
`redis+cluster://` the replicas must be 0 (config.RedisSettings refuses more).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

log = structlog.get_logger(__name__)
# How long a count of the primary's connected replicas is used before it is read again.
REPLICA_COUNT_SECONDS = 1.0


class NotReplicatedError(ResponseError):
    """A queue write reached the primary but not the required replicas in time: not acknowledged."""


@dataclass(eq=False)
class Durability:
    """How many replicas must have a write before it is acknowledged (0: the primary is enough).

    One per process (it remembers how many replicas the primary had connected when last asked)."""

    replicas: int = 0
    timeout_seconds: float = 2.0
    _connected: int = field(default=0, init=False, repr=False)
    _counted_at: float = field(default=-math.inf, init=False, repr=False)

    async def attempt(
        self, redis: Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> tuple[Any, bool]:
        """Run `script`; its reply, and whether the replicas confirmed it (always True with none)."""
        wait_for = await self.replicas_to_wait_for(redis)
        if wait_for <= 0:
            return await script(keys=keys, args=args), True
        async with redis.pipeline(transaction=False) as pipe:
            await script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", wait_for, round(self.timeout_seconds * 1000))
            reply, acknowledged = await pipe.execute()
        return reply, int(acknowledged) >= wait_for

    async def replicas_to_wait_for(self, redis: Redis) -> int:
        """`replicas`, or as many as the primary has connected when that is fewer (see above)."""
        if self.replicas <= 0:
            return 0
        now = time.monotonic()
        if now - self._counted_at >= REPLICA_COUNT_SECONDS:
            info = await redis.info("replication")
            self._note(int(info.get("connected_slaves", 0)))
            self._counted_at = now
        return min(self.replicas, self._connected)

    def _note(self, connected: int) -> None:
        """Remember the count; say so when it falls below `replicas` (or starts below) or comes back."""
        first = self._counted_at == -math.inf
        was_short = first or self._connected < self.replicas
        short = connected < self.replicas
        self._connected = connected
        if short and (first or not was_short):
            log.warning(
                "the Redis primary has fewer replicas connected than REDIS_WAIT_REPLICAS: queue writes "
                "wait only for those (none: on the primary alone, lost if it dies before a replica is back)",
                connected=connected,
                wanted=self.replicas,
            )
        elif not short and was_short and not first:
            log.info(
                "the Redis primary has its replicas again: queue writes wait for them", connected=connected
            )

    async def write(
        self, redis: Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], what: str
    ) -> Any:
        """Run `script` and return its reply, or raise `NotReplicatedError` when not confirmed."""
        reply, confirmed = await self.attempt(redis, script, keys, args)
        if not confirmed:
            raise self.not_replicated(what)
        return reply

    def not_replicated(self, what: str) -> NotReplicatedError:
        return NotReplicatedError(
            f"NOREPLICAS {what}: not confirmed by {self.replicas} replica(s) within "
            f"{self.timeout_seconds:g} s, so not acknowledged (it is tried again)"
        )
