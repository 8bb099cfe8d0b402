"""Health changes worth a message: a component unhealthy for longer than a threshold, then healthy.

Components: Redis, each service that must beat (event-broker, event-processor; others that beat
are watched too), and IB Gateway as the processors report it (`gateway` in their heartbeats: down
while a fresh processor cannot reach it, since its first failed connection). A service is unhealthy
when its heartbeat is stale or missing (the /health rules, management_service.health); Redis when
it does not answer. PostgreSQL is not watched here: the
messages are queued in it, so its outage can only be logged.

A component down since `since` gets the key `health:<name>:down:<since>` once it has been down for
`threshold` seconds, and `health:<name>:up:<since>` when it is healthy again. For a stale service,
`since` is its last heartbeat's time, the same for every replica of the management service, so two
replicas queue one message. For Redis and a missing service it is when this process first saw the
problem (a replica each, at worst). A notifier restarted during an outage sends the "down" again
only if its key changed, and the "up" only if it saw the outage itself.

What was notified is remembered only once the messages are queued (`confirm`, after the insert
commits): a round whose insert failed is worked out again next time, so no "down" is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from management_service.health import HealthPolicy, check_health, gateway_reports
from management_service.models import ServiceHeartbeat
from management_service.notifications.messages import health_message
from management_service.notifications.rows import Draft
from management_service.notifications.targets import Target
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore

SAME_OUTAGE_SECONDS = 2.0


@dataclass(frozen=True)
class ComponentState:
    """One component's health now: healthy or not, since when (None: not known), and why."""

    name: str
    healthy: bool
    since: float | None
    reason: str


def component_states(
    queue_ok: bool, queue_error: str, beats: Mapping[str, tuple[str, float | None]], now: float
) -> list[ComponentState]:
    """The states of Redis and of each service (`beats`: name -> (status, age in seconds))."""
    states = [ComponentState("redis", queue_ok, None, queue_error)]
    for name, (status, age) in sorted(beats.items()):
        if status == "unknown":  # Redis is down: the heartbeats cannot be read
            continue
        since = round(now - age) if status == "stale" and age is not None else None
        states.append(ComponentState(name, status == "ok", since, f"heartbeat {status}"))
    return states


def gateway_state(heartbeats: Mapping[str, ServiceHeartbeat]) -> ComponentState | None:
    """IB Gateway as the fresh processors report it (None when none reports it: a simulated broker).

    Down while any of them cannot reach it, since the earliest of their outages began."""
    reports = gateway_reports(heartbeats)
    if not reports:
        return None
    unreachable = [r for r in reports if r.state == "unreachable"]
    if not unreachable:
        return ComponentState("ib-gateway", True, None, "connected")
    starts = [r.since.timestamp() for r in unreachable if r.since is not None]
    reasons = "; ".join(f"{r.instance}: {r.reason}" for r in unreachable)
    return ComponentState("ib-gateway", False, min(starts) if starts else None, reasons)


class HealthWatch:
    """Turns health checks into down/up messages for the targets that want `health`."""

    def __init__(
        self,
        queue: EventQueue,
        store: EventStore,
        policy: HealthPolicy,
        threshold_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self._queue = queue
        self._store = store
        self._policy = policy
        self._threshold = threshold_seconds
        self._clock = clock
        self._down_since: dict[str, float] = {}
        self._notified: dict[str, float] = {}  # component -> the outage notified (its `since`)
        self._staged: dict[str, float] | None = None  # `_notified` once this round's drafts commit

    async def drafts(self, targets: Sequence[Target]) -> list[Draft]:
        """Check health once; the messages it calls for (`confirm` once they are queued)."""
        self._staged = None
        wanting = [t for t in targets if NotifyOn.HEALTH in t.on]
        if not wanting:
            return []
        report = await check_health(self._queue, self._store, self._policy)
        redis = report.components.redis
        beats = {name: (beat.status, beat.age_seconds) for name, beat in report.components.heartbeats.items()}
        now = self._clock()
        notified = dict(self._notified)
        messages = []
        states = component_states(redis.status == "ok", redis.error or "down", beats, now)
        gateway = gateway_state(report.components.heartbeats)
        for state in [*states, *([gateway] if gateway else [])]:
            messages += self._change(state, now, notified)
        self._staged = notified
        return [
            Draft(key, t.target_id, NotifyOn.HEALTH, title, body)
            for key, title, body in messages
            for t in wanting
        ]

    def confirm(self) -> None:
        """The last round's messages are queued: remember what they notified."""
        if self._staged is not None:
            self._notified, self._staged = self._staged, None

    def _change(
        self, state: ComponentState, now: float, notified: dict[str, float]
    ) -> list[tuple[str, str, str]]:
        if state.healthy:
            self._down_since.pop(state.name, None)
            since = notified.pop(state.name, None)
            if since is None:
                return []
            message = health_message(state.name, False, _at(since), state.reason)
            return [(f"health:{state.name}:up:{round(since)}", message.title, message.body)]
        since = state.since if state.since is not None else self._down_since.get(state.name, now)
        self._down_since[state.name] = since
        if now - since < self._threshold or _same(notified.get(state.name), since):
            return []
        notified[state.name] = since
        message = health_message(state.name, True, _at(since), state.reason)
        return [(f"health:{state.name}:down:{round(since)}", message.title, message.body)]


def _same(notified: float | None, since: float) -> bool:
    # A stale service's `since` is recomputed from its heartbeat's age at every check: allow rounding.
    return notified is not None and abs(notified - since) <= SAME_OUTAGE_SECONDS


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
