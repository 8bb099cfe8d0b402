"""The request and response bodies of the management API (what /openapi.json describes).

The product brief fixes the shapes of `/health`, `/queue/status` and `/queue/events`; fields beyond
the brief's are additions, never renames, so clients written against the brief keep working.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from typing_extensions import TypeAliasType

from rebalancer_shared.accounts import RebalancingSettings
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.queue import EnqueueOutcome, EventState, QueueStats, RetryNowOutcome

ComponentStatus = Literal["ok", "down"]
HeartbeatStatus = Literal["ok", "stale", "missing", "unknown"]
HealthStatus = Literal["healthy", "unhealthy", "error"]


def _iso_text(value: object) -> object:
    """Only ISO 8601 text reads as a time (pydantic alone would also read `0.5` as Unix seconds)."""
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("give an ISO 8601 time with its zone, like 2026-11-02T14:30:00Z") from None
    return value


# A time in a query: ISO 8601 with its zone (a time without one is ambiguous and refused).
IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]


class _OnlyMatchingKeys:
    """JSON Schema of a dict with constrained keys: other keys are invalid (pydantic leaves them open)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["additionalProperties"] = False
        return schema


# What PostgreSQL's JSONB can store: no NUL in any text, no NaN or infinity.
NO_NUL_PATTERN = r"^[^\x00]*$"
StorableText = Annotated[str, StringConstraints(pattern=NO_NUL_PATTERN)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
JsonValue = TypeAliasType(
    "JsonValue",
    "StorableText | int | FiniteNumber | bool | list[JsonValue] | JsonObject | None",
)
JsonObject = Annotated[dict[StorableText, JsonValue], _OnlyMatchingKeys()]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Stored(_Body):
    """A body read from the store's views (frozen dataclasses of `rebalancer_shared.store`).

    Their enums are shown as plain strings: the published schema of these bodies stays `string`,
    so a status added later does not break a client generated from it.
    """

    model_config = ConfigDict(frozen=True, from_attributes=True)


class ErrorResponse(_Body):
    """The body of every error the API itself raises (validation errors keep FastAPI's shape)."""

    detail: str


class ComponentHealth(_Body):
    """A server the service depends on: does it answer, how fast, and if not, why."""

    status: ComponentStatus
    latency_ms: float | None = None
    error: str | None = None


class InstanceHeartbeat(_Body):
    """One process's last heartbeat."""

    instance: str
    state: str
    age_seconds: float
    stale: bool
    details: dict[str, Any] = Field(default_factory=dict)


class ServiceHeartbeat(_Body):
    """A service's liveness: ok when at least one instance beat within the stale limit."""

    status: HeartbeatStatus
    age_seconds: float | None = Field(default=None, description="Age of the freshest instance's heartbeat.")
    state: str | None = Field(default=None, description="State reported by the freshest instance.")
    instances: list[InstanceHeartbeat] = Field(default_factory=list)


class HealthComponents(_Body):
    redis: ComponentHealth
    postgres: ComponentHealth
    heartbeats: dict[str, ServiceHeartbeat] = Field(
        description="Keyed by service name (event-broker, event-processor, and any other that beats)."
    )
    stale_after_seconds: float


class EventsByClass(_Body):
    """Waiting events per failure class (see the README's "Retries" section)."""

    transient: int = Field(description="Retrying after a transient failure (state `retrying`).")
    market_closed: int = Field(description="Waiting for the next trading window (state `scheduled`).")
    needs_attention: int = Field(description="Waiting for a person or the next session (`needs_attention`).")


def events_by_class(stats: QueueStats) -> EventsByClass:
    """The waiting events of the queue's stats per failure class."""
    return EventsByClass(
        transient=stats.retrying_count,
        market_closed=stats.scheduled_count,
        needs_attention=stats.needs_attention_count,
    )


class HealthResponse(_Body):
    """The brief's health shape plus the state of each component."""

    status: HealthStatus
    healthy: bool
    events_with_retries: int | None = Field(description="Live events with times_queued > 1; null if unknown.")
    events_by_class: EventsByClass | None = Field(
        default=None, description="Waiting events per failure class; null if unknown."
    )
    message: str
    components: HealthComponents


class QueueStatusResponse(_Body):
    """Queue counters (read without scanning the queue)."""

    queue_length: int = Field(description="Events waiting to be claimed.")
    active_events_count: int = Field(description="Live events: queued, processing or retrying.")
    oldest_event_age_seconds: float | None = Field(description="Age of the oldest live event; null if none.")
    events_with_retries: int = Field(description="Live events with times_queued > 1.")
    processing_count: int
    retrying_count: int = Field(description="Events waiting for their retry delay after a transient failure.")
    scheduled_count: int = Field(default=0, description="Events waiting for the next trading window.")
    needs_attention_count: int = Field(
        default=0, description="Events a person should look at (retried at the next session or on request)."
    )
    events_by_class: EventsByClass | None = None


class QueuedEventResponse(_Body):
    """A live event as the brief lists it, plus where it is and its last error."""

    event_id: uuid.UUID
    account_id: str
    exec_command: Command
    times_queued: int
    created_at: datetime
    data: dict[str, Any]
    source: EventSource
    state: EventState
    rerun: bool = Field(description="A trigger arrived while it was processing: it runs once more.")
    last_error: str | None
    failure_class: FailureClass | None = Field(
        default=None, description="The class of its last failure: transient, market_closed, needs_attention."
    )
    due_at: datetime | None = Field(default=None, description="While it waits: when it runs again.")


class EnqueueRequest(_Body):
    """An event added by hand. `account_id` must be a configured account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    exec_command: Command
    data: JsonObject = Field(
        default_factory=dict, description="The trigger payload, kept as given (any JSON object)."
    )

    @field_validator("data")
    @classmethod
    def _encodable(cls, data: dict[str, Any]) -> dict[str, Any]:
        if _has_lone_surrogate(data):
            raise ValueError("contains an unpaired surrogate: text must be valid Unicode")
        return data

    def to_event(self) -> Event:
        """The event this request asks for (source `api`)."""
        return Event(
            account_id=self.account_id,
            exec_command=self.exec_command,
            data=self.data,
            source=EventSource.API,
        )


def _has_lone_surrogate(value: object) -> bool:
    """True when a key or string is not encodable as UTF-8 (JSON allows "\\ud800" alone)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(map(_has_lone_surrogate, [*value.keys(), *value.values()]))
    if isinstance(value, list):
        return any(map(_has_lone_surrogate, value))
    return False


class EnqueueResponse(_Body):
    """What happened to a posted event; `event_id` is the event that now stands for the key."""

    event_id: uuid.UUID
    outcome: EnqueueOutcome
    message: str


class RetryResponse(_Body):
    """What an operator's "retry now" did."""

    event_id: uuid.UUID
    outcome: RetryNowOutcome = Field(
        description="`requeued`: it was waiting and runs when a worker is free; `queued`: it already was."
    )
    message: str


class RemovedEventResponse(_Body):
    """An event an operator removed from the queue."""

    event_id: uuid.UUID
    account_id: str
    exec_command: Command
    times_queued: int
    status: Literal["removed"] = "removed"


class EventRecord(_Stored):
    """An event's row in the history."""

    event_id: uuid.UUID
    schema_version: int
    account_id: str
    exec_command: str
    source: str
    data: dict[str, Any]
    ably_message_id: str | None
    status: str
    times_queued: int
    last_error: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    finished_at: AwareDatetime | None
    failure_class: str | None = Field(default=None, description="The class of its last failure.")
    next_attempt_at: AwareDatetime | None = Field(default=None, description="While it waits: when it runs.")


class EventPage(BaseModel):
    """One page of the history's events, newest first."""

    events: list[EventRecord]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page (older events); null on the last page."
    )


class TransitionRecord(_Stored):
    """One change of an event's state (a waiting state carries the error in `detail`, its failure class
    and when it is due)."""

    state: str
    times_queued: int
    detail: str | None
    at: AwareDatetime
    failure_class: str | None = None
    due_at: AwareDatetime | None = None


class OrderRecordResponse(_Stored):
    """An order a run placed, as the broker last reported it."""

    symbol: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    broker_order_id: int | None
    perm_id: int | None
    order_ref: str
    status: str
    filled_quantity: float
    avg_fill_price: float | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    message: str | None = None  # the broker's rejection or error, e.g. "IB error 201: ..."


class RunRecordResponse(_Body):
    """One attempt of the event's command: result, error, equity, plan and orders."""

    run_id: uuid.UUID
    attempt: int
    execution_mode: str
    worker: str
    status: str
    message: str | None
    error: str | None
    equity_info: dict[str, Any] | None
    plan: dict[str, Any] | None
    result: dict[str, Any] | None
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    orders: list[OrderRecordResponse]


class RunDetail(RunRecordResponse):
    """One run with the event it ran for and the account it traded (`GET /runs/{run_id}`)."""

    event_id: uuid.UUID
    account_id: str
    exec_command: str


class ListedOrderResponse(OrderRecordResponse):
    """An order in a listing, with the run that placed it and the account it traded."""

    run_id: uuid.UUID
    event_id: uuid.UUID
    account_id: str


class OrderPage(BaseModel):
    """One page of the history's orders, newest first."""

    orders: list[ListedOrderResponse]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page (older orders); null on the last page."
    )


class EventHistoryResponse(_Body):
    """An event's whole life from PostgreSQL."""

    event: EventRecord
    transitions: list[TransitionRecord]
    runs: list[RunRecordResponse]


class LastRun(_Stored):
    """The newest run of an account."""

    status: str
    exec_command: str
    event_id: uuid.UUID
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    message: str | None


class AccountResponse(_Body):
    """A configured account: the channel it follows, its settings and its last run."""

    account_id: str
    channel: str
    settings: RebalancingSettings
    last_run: LastRun | None


class WeightLine(_Body):
    """One symbol's share of total equity: before the run, its target, and after (or now)."""

    symbol: str
    before: float
    target: float = Field(description="0 for a symbol held but not targeted (it is sold).")
    after: float


class PlanWeights(_Body):
    """The newest plan's weights against its targets, from the run that made it."""

    run_id: uuid.UUID
    event_id: uuid.UUID
    exec_command: str
    planned_at: AwareDatetime
    lines: list[WeightLine]


class Drift(_Body):
    """How far the account's weights are from its targets now, judged from the newest snapshot of
    its holdings in the history (not a fresh read of the gateway)."""

    as_of: AwareDatetime
    source: Literal["after_live_rebalance", "read_by_run"] = Field(
        description="`after_live_rebalance`: the weights a filled live rebalance left (at its planned "
        "prices); `read_by_run`: the weights a run read before it traded (a dry run, a failed run)."
    )
    max_gap_bp: float = Field(description="The largest |weight - target| in basis points.")
    l1_gap_bp: float = Field(description="The sum of |weight - target| in basis points.")


class AccountDetail(AccountResponse):
    """An account with its newest runs, the newest plan's weights against targets and its drift."""

    runs: list[RunRecordResponse]
    runs_cursor: str | None = Field(description="`GET /accounts/{id}?cursor=` for older runs.")
    last_plan: PlanWeights | None
    drift: Drift | None = Field(description="Null without a snapshot younger than `drift_max_age`.")
