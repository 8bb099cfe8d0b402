"""The health verdict: can the product take and run events right now, and if not, why.

Rules (an operator's reading of the brief's "healthy = no events with retries"):

- **error**: Redis or PostgreSQL does not answer within `check_timeout_seconds`. Nothing else can
  be judged then (with Redis down the retry count and the heartbeats are unknown).
- **unhealthy**: both answer, but an event needs attention (a rejected order, invalid allocations,
  ...: see the failure classes), or one is retrying after a transient failure, or a required
  service (event-broker, event-processor) has no fresh heartbeat: its heartbeats are all older than
  `stale_after_seconds` (**stale**: the process died or hangs) or it never wrote one (**missing**:
  not deployed or not started). Either way triggers would not be turned into orders. An event
  `scheduled` for the next trading window is normal: it does not make the system unhealthy. A
  processor with a fresh heartbeat that reports IB Gateway `unreachable` (its last connection
  attempt failed: `gateway` in its heartbeat's details) makes it unhealthy too: its events fail.
- **healthy** otherwise. A service is fresh when at least one of its instances is; stale instances
  beside a fresh one (a replica that died) are listed but do not make the system unhealthy.

The heartbeat's own `state` text (e.g. "running") is reported as is, not judged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from management_service.models import (
    ComponentHealth,
    HealthComponents,
    HealthResponse,
    HealthStatus,
    InstanceHeartbeat,
    ServiceHeartbeat,
    events_by_class,
)
from rebalancer_shared.config import Settings
from rebalancer_shared.heartbeats import Heartbeat, read_heartbeats
from rebalancer_shared.logging import redact_secrets
from rebalancer_shared.queue import EventQueue, QueueStats
from rebalancer_shared.store import EventStore

log = structlog.get_logger(__name__)
T = TypeVar("T")
REQUIRED_SERVICES = ("event-broker", "event-processor")
# The processors beat every few seconds; three missed beats mean the process is gone.
STALE_AFTER_BEATS = 3
HEALTHY_MESSAGE = "No events require retry"


@dataclass(frozen=True)
class HealthPolicy:
    """What /health demands: which services must beat, how old a beat may be, how long to wait."""

    stale_after_seconds: float = 30.0
    required_services: tuple[str, ...] = REQUIRED_SERVICES
    check_timeout_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        """Stale after three heartbeat intervals of the processors (default 3 x 10 s = 30 s)."""
        configured = settings.management.heartbeat_stale_seconds
        default = STALE_AFTER_BEATS * settings.processing.heartbeat_seconds
        return cls(stale_after_seconds=configured if configured is not None else default)


@dataclass(frozen=True)
class _RedisFacts:
    component: ComponentHealth
    stats: QueueStats | None
    beats: list[Heartbeat] | None


def describe_error(exc: BaseException) -> str:
    """A short reason for an operator, with registered secrets masked."""
    if isinstance(exc, TimeoutError):
        return "no answer within the check timeout"
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return str(redact_secrets(None, "", {"reason": reason})["reason"])


async def _timed(call: Awaitable[T], limit_seconds: float) -> tuple[T, float]:
    start = time.perf_counter()
    result = await asyncio.wait_for(call, limit_seconds)
    return result, round((time.perf_counter() - start) * 1000, 2)


async def _check_redis(queue: EventQueue, limit_seconds: float) -> _RedisFacts:
    async def read() -> tuple[QueueStats, list[Heartbeat]]:
        stats = await queue.stats()
        return stats, await read_heartbeats(queue.redis, queue.keys.prefix)

    try:
        (stats, beats), latency = await _timed(read(), limit_seconds)
    except Exception as exc:  # any failure to read Redis makes it "down" with the reason shown
        reason = describe_error(exc)
        log.warning("health check: redis is down", error=reason)
        return _RedisFacts(ComponentHealth(status="down", error=reason), None, None)
    return _RedisFacts(ComponentHealth(status="ok", latency_ms=latency), stats, beats)


async def _check_postgres(store: EventStore, limit_seconds: float) -> ComponentHealth:
    try:
        _, latency = await _timed(store.ping(), limit_seconds)
    except Exception as exc:  # any failure to reach PostgreSQL makes it "down" with the reason shown
        reason = describe_error(exc)
        log.warning("health check: postgres is down", error=reason)
        return ComponentHealth(status="down", error=reason)
    return ComponentHealth(status="ok", latency_ms=latency)


def judge_heartbeats(
    beats: Sequence[Heartbeat] | None, policy: HealthPolicy, now: float
) -> dict[str, ServiceHeartbeat]:
    """Each required service's liveness (and any other service that beats), from its heartbeats."""
    services = list(policy.required_services)
    services += sorted({b.service for b in beats or ()} - set(services))
    if beats is None:
        return {name: ServiceHeartbeat(status="unknown") for name in services}
    return {name: _judge_service([b for b in beats if b.service == name], policy, now) for name in services}


def _judge_service(beats: Sequence[Heartbeat], policy: HealthPolicy, now: float) -> ServiceHeartbeat:
    if not beats:
        return ServiceHeartbeat(status="missing")
    instances = [
        InstanceHeartbeat(
            instance=b.instance,
            state=b.state,
            age_seconds=round(b.age(now), 3),
            stale=b.age(now) > policy.stale_after_seconds,
            details=b.details,
        )
        for b in sorted(beats, key=lambda b: b.at, reverse=True)
    ]
    freshest = instances[0]
    return ServiceHeartbeat(
        status="stale" if freshest.stale else "ok",
        age_seconds=freshest.age_seconds,
        state=freshest.state,
        instances=instances,
    )


def _problems(
    stats: QueueStats, heartbeats: dict[str, ServiceHeartbeat], required: Sequence[str]
) -> list[str]:
    problems = []
    if stats.needs_attention_count:
        count = stats.needs_attention_count
        problems.append(f"{count} {'event needs' if count == 1 else 'events need'} attention")
    if stats.retrying_count:
        count = stats.retrying_count
        problems.append(f"{count} {'event requires' if count == 1 else 'events require'} retry")
    for name in required:
        beat = heartbeats[name]
        if beat.status == "stale":
            problems.append(f"{name} heartbeat is stale ({beat.age_seconds:.0f} s old)")
        elif beat.status != "ok":
            problems.append(f"{name} heartbeat is {beat.status}")
    return problems + gateway_problems(heartbeats)


@dataclass(frozen=True)
class GatewayReport:
    """IB Gateway as one processor with a fresh heartbeat found it (its `gateway` detail)."""

    instance: str
    state: str  # idle, connected, unreachable
    since: datetime | None
    reason: str | None


def gateway_reports(heartbeats: Mapping[str, ServiceHeartbeat]) -> list[GatewayReport]:
    """What each fresh processor says of IB Gateway (none with a simulated broker). A stale
    processor's last word is skipped: "connected" from a process that died says nothing about now."""
    service = heartbeats.get("event-processor")
    reports = []
    for instance in service.instances if service else ():
        gateway = instance.details.get("gateway")
        if instance.stale or not isinstance(gateway, dict):
            continue
        since = gateway.get("since")
        moment = datetime.fromtimestamp(since, UTC) if isinstance(since, int | float) else None
        reports.append(
            GatewayReport(instance.instance, str(gateway.get("state")), moment, gateway.get("reason"))
        )
    return reports


def gateway_problems(heartbeats: Mapping[str, ServiceHeartbeat]) -> list[str]:
    return [
        f"IB Gateway is unreachable from event-processor {report.instance}: {report.reason}"
        for report in gateway_reports(heartbeats)
        if report.state == "unreachable"
    ]


def _verdict(
    redis: _RedisFacts,
    postgres: ComponentHealth,
    heartbeats: dict[str, ServiceHeartbeat],
    policy: HealthPolicy,
) -> tuple[HealthStatus, str]:
    down = [
        f"{name} is down: {component.error}"
        for name, component in (("redis", redis.component), ("postgres", postgres))
        if component.status == "down"
    ]
    if down or redis.stats is None:
        return "error", "; ".join(down)
    problems = _problems(redis.stats, heartbeats, policy.required_services)
    if problems:
        return "unhealthy", "; ".join(problems)
    return "healthy", HEALTHY_MESSAGE


async def check_health(queue: EventQueue, store: EventStore, policy: HealthPolicy) -> HealthResponse:
    """Check Redis, PostgreSQL and the heartbeats concurrently (bounded by the check timeout)."""
    health, _ = await check_health_and_stats(queue, store, policy)
    return health


async def check_health_and_stats(
    queue: EventQueue, store: EventStore, policy: HealthPolicy
) -> tuple[HealthResponse, QueueStats | None]:
    """The health verdict and the queue's counters it read (None when Redis did not answer)."""
    redis, postgres = await asyncio.gather(
        _check_redis(queue, policy.check_timeout_seconds),
        _check_postgres(store, policy.check_timeout_seconds),
    )
    heartbeats = judge_heartbeats(redis.beats, policy, time.time())
    status, message = _verdict(redis, postgres, heartbeats, policy)
    health = HealthResponse(
        status=status,
        healthy=status == "healthy",
        events_with_retries=redis.stats.events_with_retries if redis.stats else None,
        events_by_class=events_by_class(redis.stats) if redis.stats else None,
        message=message,
        components=HealthComponents(
            redis=redis.component,
            postgres=postgres,
            heartbeats=heartbeats,
            stale_after_seconds=policy.stale_after_seconds,
        ),
    )
    return health, redis.stats
