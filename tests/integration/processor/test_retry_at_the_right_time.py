"""Events retried at the right time: the worker, the retry policy over the NYSE calendar, the real
ib_async against the loopback TWS, and one clock the test moves for the queue, the policy and the
gateway alike (so "runs when the clock reaches it" is tested without waiting days).

- outside the trading window a live rebalance is `scheduled` (no run, no order) for the next
  window's start, and runs when the clock reaches it; read-only commands run at once;
- an order IB rejects (201) makes the event need attention after one run: it is tried again once per
  session, at once when an operator asks, and /health says so meanwhile;
- a gateway outage is transient: retried on the fixed delay until the gateway is back;
- the pattern-day-trader guard's `defer` schedules the event for the next session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from event_processor.brokers import IbkrBroker
from event_processor.retry_policy import RetryPolicy
from event_processor.trading_calendar import TradingCalendar
from management_service.health import HealthPolicy
from management_service.main import create_app
from management_service.services import Services
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import OrderSettings
from rebalancer_shared.events import Command, Event
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.queue import EventQueue, EventState, QueuedEventView
from rebalancer_shared.store import EventStore
from tests.fakes.allocations import AllocationServer
from tests.fakes.tws import FakeTws
from tests.fakes.tws.scenarios import ACCOUNT, TRADING_CLIENT_ID, ibkr_settings
from tests.integration.management.helpers import beat_all, make_settings
from tests.integration.processor.harness import FAST, Processor, accounts_on, running_processor
from tests.support.servers import hold_port

NEW_YORK = ZoneInfo("America/New_York")
LEASE_SECONDS = 30.0
REJECTION = "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH LOAN VALUE"


def ny(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


class MarketClock:
    """The one clock of the test: the queue's due times, the policy's calendar and the gateway's."""

    def __init__(self, fake: FakeTws, start: datetime) -> None:
        self.fake = fake
        self.moment = start
        self.set(start)

    def set(self, moment: datetime) -> None:
        self.moment = moment.astimezone(UTC)
        self.fake.set_market_time(moment)

    def seconds(self) -> float:
        return self.moment.timestamp()

    def now(self) -> datetime:
        return self.moment


@contextlib.asynccontextmanager
async def processor_at(
    start: datetime,
    tws: FakeTws,
    queue: EventQueue,
    store: EventStore,
    api: AllocationServer,
    port: int | None = None,
) -> AsyncIterator[tuple[Processor, MarketClock]]:
    """A processor whose queue, retry policy and gateway all read one clock, set to `start`."""
    clock = MarketClock(tws, start)
    clocked = EventQueue(queue.redis, queue.keys.prefix, lease_seconds=LEASE_SECONDS, clock=clock.seconds)
    policy = RetryPolicy(TradingCalendar(), FAST.retry_delay_seconds, clock=clock.now)
    broker = IbkrBroker(ibkr_settings(port or tws.port), OrderSettings(), poll_interval_seconds=0.02)
    accounts: dict[str, Account] = accounts_on("chan", ACCOUNT)
    try:
        # Due times on the test's clock are not real time: the slots find them by polling.
        # A long lease: a loaded test machine may stall for seconds, which would fence a run (whose
        # retry then waits on a clock that does not move).
        polling = FAST.model_copy(update={"claim_poll_seconds": 0.05, "lease_seconds": LEASE_SECONDS})
        async with running_processor(clocked, store, broker, api, accounts, polling, policy) as proc:
            yield proc, clock
    finally:
        await broker.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.05)


async def view_of(proc: Processor, event: Event) -> QueuedEventView | None:
    return await proc.queue.get(str(event.event_id))


async def until_state(proc: Processor, event: Event, state: EventState) -> QueuedEventView:
    async def reached() -> bool:
        view = await view_of(proc, event)
        return view is not None and view.state is state

    await eventually(reached, f"the event never became {state.value}")
    view = await view_of(proc, event)
    assert view is not None
    return view


async def until_completed(proc: Processor, event: Event) -> None:
    async def completed() -> bool:
        row = await proc.store.get_event(event.event_id)
        return row is not None and row.status == "completed"

    await eventually(completed, "the event did not complete")


@pytest.mark.parametrize(
    ("start", "due"),
    [
        (ny(2026, 12, 5, 11, 0), ny(2026, 12, 7, 9, 35)),  # a Saturday: Monday's open + 5 minutes
        (ny(2026, 12, 25, 11, 0), ny(2026, 12, 28, 9, 35)),  # Christmas (a Friday): the next Monday
        (ny(2027, 7, 5, 11, 0), ny(2027, 7, 6, 9, 35)),  # Independence Day observed, 2027
        (ny(2026, 11, 27, 12, 45), ny(2026, 11, 30, 9, 35)),  # 15 minutes before the 13:00 close
        (ny(2027, 11, 26, 12, 45), ny(2027, 11, 29, 9, 35)),  # the same half day in 2027
        (ny(2026, 12, 2, 9, 0), ny(2026, 12, 2, 9, 35)),  # pre-market of a full day: the same day
    ],
    ids=["saturday", "christmas-2026", "independence-2027", "half-day-2026", "half-day-2027", "pre-market"],
)
async def test_a_live_rebalance_outside_the_window_is_scheduled_and_runs_when_the_clock_reaches_it(
    tws: FakeTws, queue: EventQueue, store: EventStore, api: AllocationServer, start: datetime, due: datetime
) -> None:
    async with processor_at(start, tws, queue, store, api) as (proc, clock):
        live = await proc.submit(ACCOUNT, Command.REBALANCE)
        positions = await proc.submit(ACCOUNT, Command.PRINT_POSITIONS)
        view = await until_state(proc, live, EventState.SCHEDULED)
        await until_completed(proc, positions)  # read-only commands run at once
        assert (view.due_at, view.failure_class) == (due.astimezone(UTC), FailureClass.MARKET_CLOSED)
        assert view.event.times_queued == 1, "waiting for the market is not a failure"
        assert tws.state.received_orders == []
        history = await store.history(live.event_id)
        assert history is not None
        assert (history.event.status, history.event.next_attempt_at) == ("scheduled", due.astimezone(UTC))
        assert history.runs == (), "the run did not start"
        assert "a live rebalance waits for it" in (history.event.last_error or "")

        clock.set(due - timedelta(seconds=1))
        await asyncio.sleep(0.3)  # six claim polls
        assert (await until_state(proc, live, EventState.SCHEDULED)).due_at == due.astimezone(UTC)
        assert tws.state.received_orders == []

        clock.set(due)
        await until_completed(proc, live)
    assert tws.state.received_orders, "the rebalance traded at the open"
    history = await store.history(live.event_id)
    assert history is not None
    assert [run.status for run in history.runs] == ["success"]


async def test_print_rebalance_says_when_the_live_run_would_happen(
    tws: FakeTws, queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    async with processor_at(ny(2026, 12, 5, 11, 0), tws, queue, store, api) as (proc, _):
        dry = await proc.submit(ACCOUNT, Command.PRINT_REBALANCE)
        await until_completed(proc, dry)
    history = await store.history(dry.event_id)
    assert history is not None
    [run] = history.runs
    assert run.message is not None
    assert "a live rebalance would wait until 2026-12-07 09:35 EST (market closed (weekend)" in run.message


async def test_a_rejected_order_needs_attention_is_tried_once_per_session_and_at_once_on_request(
    tws: FakeTws, queue: EventQueue, store: EventStore, api: AllocationServer, tmp_path: Path, prefix: str
) -> None:
    tws.state.rejections["CCC"] = REJECTION
    wednesday = ny(2026, 12, 2, 11, 0)
    async with processor_at(wednesday, tws, queue, store, api) as (proc, clock):
        event = await proc.submit(ACCOUNT, Command.REBALANCE)
        view = await until_state(proc, event, EventState.NEEDS_ATTENTION)
        assert (view.failure_class, view.event.times_queued) == (FailureClass.NEEDS_ATTENTION, 2)
        assert view.due_at == ny(2026, 12, 3, 9, 35).astimezone(UTC), "the next session's window"
        assert view.last_error is not None
        assert "IB error 201" in view.last_error
        assert await health_message(proc, tmp_path, prefix) == (503, "1 event needs attention")

        ccc_orders = []
        moment = wednesday
        while moment < ny(2026, 12, 3, 15, 0):  # through Wednesday and Thursday, half an hour at a time
            moment += timedelta(minutes=30)
            clock.set(moment)
            await asyncio.sleep(0.15)
            await until_state(proc, event, EventState.NEEDS_ATTENTION)
            ccc_orders.append(sum(1 for o in tws.state.received_orders if o.symbol == "CCC"))
        assert ccc_orders[0] == 1, "one attempt on Wednesday"
        assert ccc_orders[-1] == 2, "one more at Thursday's open, none in a loop"
        view = await until_state(proc, event, EventState.NEEDS_ATTENTION)
        assert view.due_at == ny(2026, 12, 4, 9, 35).astimezone(UTC)

        tws.state.rejections.clear()  # Thursday 15:00: the operator fixed the account's permissions
        await proc.lifecycle.retry_now(str(event.event_id), "permissions fixed")
        await until_completed(proc, event)
    assert sum(1 for o in tws.state.received_orders if o.symbol == "CCC") == 3
    history = await store.history(event.event_id)
    assert history is not None
    assert [run.status for run in history.runs] == ["partial", "failed", "success"]


async def health_message(proc: Processor, tmp_path: Path, prefix: str) -> tuple[int, str]:
    """GET /health of a management service on the processor's queue and history."""
    await beat_all(proc.queue.redis, prefix)
    settings = make_settings(tmp_path, prefix=prefix, database_url="", accounts_file=tmp_path / "none")
    services = Services(lifecycle=proc.lifecycle, accounts={}, health_policy=HealthPolicy())
    transport = httpx.ASGITransport(app=create_app(settings, services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://management.test") as http:
        response = await http.get("/health")
    return response.status_code, response.json()["message"]


async def test_a_gateway_outage_is_retried_on_the_fixed_delay_until_it_returns(
    tws: FakeTws, queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    port = tws.port
    await tws.stop()
    # Down, and kept from the other tests' gateways (one on this port took this test's connections).
    with contextlib.closing(hold_port(port)):
        async with processor_at(ny(2026, 12, 2, 11, 0), tws, queue, store, api, port) as (proc, clock):
            event = await proc.submit(ACCOUNT, Command.REBALANCE)
            view = await until_state(proc, event, EventState.RETRYING)
            assert (view.failure_class, view.event.times_queued) == (FailureClass.TRANSIENT, 2)
            delay = timedelta(seconds=FAST.retry_delay_seconds)
            assert view.due_at == clock.now() + delay, "retried after the fixed delay"

            clock.set(clock.now() + delay / 2)
            await asyncio.sleep(0.3)  # six claim polls: not due yet
            view = await until_state(proc, event, EventState.RETRYING)
            assert view.event.times_queued == 2

            clock.set(clock.now() + delay / 2)

            async def tried_again() -> bool:
                again = await view_of(proc, event)
                return again is not None and again.event.times_queued == 3

            await eventually(tried_again, "not tried again once the delay passed")
            view = await until_state(proc, event, EventState.RETRYING)
            assert view.failure_class is FailureClass.TRANSIENT

            back = FakeTws(tws.state, port=port)
            await back.start()
            try:
                clock.set(clock.now() + delay)
                await until_completed(proc, event)
            finally:
                await back.stop()
        assert tws.state.received_orders


async def test_the_day_trade_guard_defers_to_the_next_session(
    tws: FakeTws, queue: EventQueue, store: EventStore, api: AllocationServer
) -> None:
    tws.state.add_execution(
        ACCOUNT, "AAA", "BUY", 10, 50.0, ny(2026, 12, 2, 9, 45), client_id=TRADING_CLIENT_ID
    )
    tws.state.accounts[ACCOUNT].day_trades_remaining = 0
    async with processor_at(ny(2026, 12, 2, 11, 0), tws, queue, store, api) as (proc, _):
        event = await proc.submit(ACCOUNT, Command.REBALANCE)
        view = await until_state(proc, event, EventState.SCHEDULED)
    assert view.failure_class is FailureClass.MARKET_CLOSED
    assert view.due_at == ny(2026, 12, 3, 9, 35).astimezone(UTC), "the next session's window"
    assert view.last_error is not None
    assert "pattern-day-trader guard" in view.last_error
    assert tws.state.received_orders == []
