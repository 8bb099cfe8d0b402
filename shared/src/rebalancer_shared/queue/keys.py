"""Every Redis key the product uses, in one place. All live under one configurable prefix.

Redis Cluster: every key starts with the prefix as a hash tag, ``{prefix}`` (a prefix that already
holds a ``{...}`` tag is used as it is), so all keys of one deployment hash to one slot: the queue's
scripts, which touch many keys at once, run on the one node that serves it, and the same code runs on
one node, under Sentinel and on a Cluster. The scripts never build a key name (scripts.py): the live
events are fields of two hashes (their records, their bodies) rather than a hash each. A
deployment's whole queue therefore lives on one Cluster node (one slot): a Cluster here buys failover
and room for other data, not a queue spread over nodes; two deployments with different prefixes
land on different slots.

Layout (``P`` = ``{prefix}``, ``<id>`` = an event id, ``<acct>`` = an account id)::

    P:q:queue        list    ids waiting to be claimed, oldest at the head (FIFO)
    P:q:events       hash    id -> the record of a live event, a JSON object of strings: state,
                             times_queued, dedup, rerun, created_ms, cmd, and while they apply
                             lease, owner, last_error, class and due_ms (of its last failure or
                             deferral); rewritten by every step
    P:q:bodies       hash    id -> the live event's Event as JSON, written once when it is queued
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
    P:q:lock:<acct>  string  token of the holder of the account's mutating-command lock
    P:heartbeats     hash    "{service}:{instance}" -> JSON {state, at, ...}: liveness of each process
    P:metrics        hash    "{counter}:{command}" -> count (events queued, completed, failed, ...)
    P:notify-metrics hash    outcome -> count of notifications (metrics.NotificationOutcome)
    P:ably:seen:<id> string  an Ably message id already turned into events (TTL > catch-up window)
    P:marker         string  written at first start; its absence with history in PostgreSQL means
                             Redis lost its data and the queue is rebuilt from PostgreSQL
    P:recovery-lock  string  single-flight guard of that rebuild (and of every reconciliation)
    P:console:session:<h>  string  a signed-in web console session: <h> is the SHA-256 of the random
                             session id its cookie holds (a reader of Redis cannot replay it); JSON
                             {client, created_at}; TTL the session's absolute life (8 h, never
                             extended); deleted at sign-out (management_service.ui.session_store)
    P:console:signin-failures:<addr>  string  failed console sign-ins from one client address in
                             the current window (TTL set when the window opens: 15 min)
"""

from __future__ import annotations

from dataclasses import dataclass


def hash_tag(prefix: str) -> str:
    """The prefix as a Redis Cluster hash tag: ``{prefix}``, or the prefix itself if it holds one."""
    opened = prefix.find("{")
    if opened >= 0 and prefix.find("}", opened + 1) > opened + 1:
        return prefix
    return "{" + prefix + "}"


@dataclass(frozen=True)
class QueueKeys:
    """Key names under one prefix (tests use their own prefix so they never touch other data).

    `prefix` is the configured name (as the history's facts know it); `base` starts every key."""

    prefix: str

    @property
    def base(self) -> str:
        return hash_tag(self.prefix)

    @property
    def queue(self) -> str:
        return f"{self.base}:q:queue"

    @property
    def events(self) -> str:
        return f"{self.base}:q:events"

    @property
    def bodies(self) -> str:
        """id -> the live event's JSON (the Event, written once; its record is in `events`)."""
        return f"{self.base}:q:bodies"

    @property
    def dedup(self) -> str:
        return f"{self.base}:q:dedup"

    @property
    def leases(self) -> str:
        return f"{self.base}:q:leases"

    @property
    def retry(self) -> str:
        return f"{self.base}:q:retry"

    @property
    def scheduled(self) -> str:
        return f"{self.base}:q:scheduled"

    @property
    def attention(self) -> str:
        return f"{self.base}:q:attention"

    @property
    def order(self) -> str:
        return f"{self.base}:q:order"

    @property
    def seq(self) -> str:
        return f"{self.base}:q:seq"

    @property
    def retried(self) -> str:
        return f"{self.base}:q:retried"

    @property
    def tombstones(self) -> str:
        return f"{self.base}:q:tombstones"

    @property
    def finished(self) -> str:
        return f"{self.base}:q:finished"

    @property
    def wake(self) -> str:
        """The pub/sub channel of wake-up nudges (a channel name, not a key)."""
        return f"{self.base}:q:wake"

    @property
    def outbox(self) -> str:
        return f"{self.base}:outbox"

    @property
    def outbox_lock(self) -> str:
        return f"{self.base}:outbox-lock"

    def account_lock(self, account_id: str) -> str:
        return f"{self.base}:q:lock:{account_id}"

    @property
    def heartbeats(self) -> str:
        return f"{self.base}:heartbeats"

    @property
    def metrics(self) -> str:
        return f"{self.base}:metrics"

    @property
    def notify_metrics(self) -> str:
        return f"{self.base}:notify-metrics"

    def ably_seen(self, message_id: str) -> str:
        return f"{self.base}:ably:seen:{message_id}"

    @property
    def marker(self) -> str:
        return f"{self.base}:marker"

    @property
    def recovery_lock(self) -> str:
        return f"{self.base}:recovery-lock"

    def console_session(self, session_hash: str) -> str:
        return f"{self.base}:console:session:{session_hash}"

    def console_signin_failures(self, client: str) -> str:
        return f"{self.base}:console:signin-failures:{client}"

    def all_patterns(self) -> list[str]:
        """Glob patterns that match every key of this prefix (tests clean up with these)."""
        return [f"{self.base}:*"]
