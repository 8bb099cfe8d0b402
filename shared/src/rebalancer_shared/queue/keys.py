"""Every Redis key the product uses, in one place. All live under one configurable prefix.

Layout (``P`` = the prefix, ``{id}`` = an event id)::

    P:q:queue        list    ids waiting to be claimed, oldest at the head (FIFO)
    P:q:event:{id}   hash    json (the Event), state, times_queued, dedup, rerun, lease, owner,
                             last_error, class and due_ms (of its last failure or deferral): the
                             one record of a live event
    P:q:dedup        hash    account_id:exec_command -> id of its live event (atomic dedup)
    P:q:leases       zset    id -> lease expiry (ms); the processing set
    P:q:retry        zset    id -> due time (ms) of every waiting event: retrying (transient
                             failure), scheduled (market closed) and needs_attention; a claim
                             moves the due ones to the back of P:q:queue
    P:q:scheduled    set     the waiting ids in state scheduled (O(1) count)
    P:q:attention    set     the waiting ids in state needs_attention (O(1) count)
    P:q:order        zset    id -> enqueue sequence number of every live event (oldest first:
                             listing and oldest age; a sequence, not a clock, so ties never reorder)
    P:q:seq          string  the counter that numbers enqueues
    P:q:retried      set     live ids with times_queued > 1 (health: events with retries)
    P:q:tombstones   set     ids removed by an operator while still in P:q:queue (skipped on claim)
    P:q:finished     zset    id -> finish time (ms) of events completed or removed in the last day:
                             a trigger submitted again is recognised, a reconcile never restores them
    P:q:wake         channel (pub/sub, not a key) one message per event that becomes claimable: the
                             ms until it is (0: now); published by the scripts, followed by one
                             subscription per processor to wake its idle slots (queue/wakeup.py)
    P:outbox         stream  every transition, appended by the script that made it; drained into
                             PostgreSQL by any process (rebalancer_shared.outbox)
    P:outbox-lock    string  the process draining the outbox now
    P:q:lock:{acct}  string  token of the holder of the account's mutating-command lock
    P:heartbeats     hash    "{service}:{instance}" -> JSON {state, at, ...}: liveness of each process
    P:metrics        hash    "{counter}:{command}" -> count (events queued, completed, failed, ...)
    P:notify-metrics hash    outcome -> count of notifications (metrics.NotificationOutcome)
    P:ably:seen:{id} string  an Ably message id already turned into events (TTL > catch-up window)
    P:marker         string  written at first start; its absence with history in PostgreSQL means
                             Redis lost its data and the queue is rebuilt from PostgreSQL
    P:recovery-lock  string  single-flight guard of that rebuild (and of every reconciliation)
    P:console:session:{h}  string  a signed-in web console session: {h} is the SHA-256 of the random
                             session id its cookie holds (a reader of Redis cannot replay it); JSON
                             {client, created_at}; TTL the session's absolute life (8 h, never
                             extended); deleted at sign-out (management_service.ui.session_store)
    P:console:signin-failures:{addr}  string  failed console sign-ins from one client address in
                             the current window (TTL set when the window opens: 15 min)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueKeys:
    """Key names under one prefix (tests use their own prefix so they never touch other data)."""

    prefix: str

    @property
    def queue(self) -> str:
        return f"{self.prefix}:q:queue"

    @property
    def event_prefix(self) -> str:
        return f"{self.prefix}:q:event:"

    def event(self, event_id: str) -> str:
        return f"{self.event_prefix}{event_id}"

    @property
    def dedup(self) -> str:
        return f"{self.prefix}:q:dedup"

    @property
    def leases(self) -> str:
        return f"{self.prefix}:q:leases"

    @property
    def retry(self) -> str:
        return f"{self.prefix}:q:retry"

    @property
    def scheduled(self) -> str:
        return f"{self.prefix}:q:scheduled"

    @property
    def attention(self) -> str:
        return f"{self.prefix}:q:attention"

    @property
    def order(self) -> str:
        return f"{self.prefix}:q:order"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:q:seq"

    @property
    def retried(self) -> str:
        return f"{self.prefix}:q:retried"

    @property
    def tombstones(self) -> str:
        return f"{self.prefix}:q:tombstones"

    @property
    def finished(self) -> str:
        return f"{self.prefix}:q:finished"

    @property
    def wake(self) -> str:
        """The pub/sub channel of wake-up nudges (a channel name, not a key)."""
        return f"{self.prefix}:q:wake"

    @property
    def outbox(self) -> str:
        return f"{self.prefix}:outbox"

    @property
    def outbox_lock(self) -> str:
        return f"{self.prefix}:outbox-lock"

    def account_lock(self, account_id: str) -> str:
        return f"{self.prefix}:q:lock:{account_id}"

    @property
    def heartbeats(self) -> str:
        return f"{self.prefix}:heartbeats"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    @property
    def notify_metrics(self) -> str:
        return f"{self.prefix}:notify-metrics"

    def ably_seen(self, message_id: str) -> str:
        return f"{self.prefix}:ably:seen:{message_id}"

    @property
    def marker(self) -> str:
        return f"{self.prefix}:marker"

    @property
    def recovery_lock(self) -> str:
        return f"{self.prefix}:recovery-lock"

    def console_session(self, session_hash: str) -> str:
        return f"{self.prefix}:console:session:{session_hash}"

    def console_signin_failures(self, client: str) -> str:
        return f"{self.prefix}:console:signin-failures:{client}"

    def all_patterns(self) -> list[str]:
        """Glob patterns that match every key of this prefix (tests clean up with these)."""
        return [f"{self.prefix}:*"]
