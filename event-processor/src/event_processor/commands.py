"""The six commands: one entry each in a dispatch table, from an event to an `ExecutionReport`.

Only `rebalance` and `cancel-orders` receive the full broker; the read-only commands receive a
`ReadOnlyBrokerView`, so a dry run cannot place or cancel an order by construction. The commands
that plan (`rebalance`, `print-rebalance`) fetch the strategy's targets from the allocation API
first; an `AllocationError` there means nothing is traded and the event retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from event_processor import execution
from event_processor.allocations import AllocationClient
from event_processor.brokers import Broker, ReadOnlyBrokerView
from event_processor.execution import UNGUARDED, ExecutionReport, OrderGuard
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import ProcessingSettings
from rebalancer_shared.events import Command, Event


@dataclass(frozen=True)
class CommandContext:
    """What a command may use."""

    event: Event
    account: Account
    broker: Broker
    allocations: AllocationClient
    processing: ProcessingSettings
    # Records the live commands' orders as they are placed and stops them when the lease may be gone.
    guard: OrderGuard = UNGUARDED
    # When a live rebalance triggered now would run (the retry policy's calendar); "" when unknown.
    live_run_note: Callable[[], str] = lambda: ""

    @property
    def event_id(self) -> str:
        return str(self.event.event_id)

    @property
    def read_only(self) -> ReadOnlyBrokerView:
        return ReadOnlyBrokerView(self.broker)

    # The targets, asked for before the run's history was written (`with_targets_asked`).
    asked_targets: asyncio.Future[Mapping[str, float]] | None = None

    async def targets(self) -> Mapping[str, float]:
        if self.asked_targets is not None:
            return await self.asked_targets
        return await self._fetch_targets()

    async def _fetch_targets(self) -> Mapping[str, float]:
        # The first runs of one Ably message's events share one request; an event added by hand is its
        # own trigger; a retry (a later attempt) asks again, so an API fixed meanwhile is heard.
        trigger = f"{self.event.ably_message_id or self.event_id}#{self.event.times_queued}"
        return (await self.allocations.fetch(self.account.channel, trigger)).weights

    def with_targets_asked(self) -> CommandContext:
        """The context with the allocation request already on its way, for a command that plans: the
        request (read-only) goes out while the run's history is written, not after. Its failure
        reaches the command when it asks (`targets`), as it would have."""
        if self.event.exec_command not in PLANNING:
            return self
        asked = asyncio.ensure_future(self._fetch_targets())
        asked.add_done_callback(_read_outcome)
        return replace(self, asked_targets=asked)

    def forget_targets(self) -> None:
        """The run ended: a request still on its way is not waited for."""
        if self.asked_targets is not None:
            self.asked_targets.cancel()


def _read_outcome(future: asyncio.Future[Mapping[str, float]]) -> None:
    """A run that ends before it asks must not leave asyncio an error "never retrieved"."""
    if not future.cancelled():
        future.exception()


async def _rebalance(ctx: CommandContext) -> ExecutionReport:
    targets = await ctx.targets()
    try:
        return await execution.rebalance(
            ctx.broker,
            ctx.account.account_id,
            targets,
            ctx.account.settings,
            ctx.event_id,
            cancel_timeout_seconds=ctx.processing.cancel_timeout_seconds,
            fill_timeout_seconds=ctx.processing.fill_timeout_seconds,
            position_settle_timeout_seconds=ctx.processing.position_settle_timeout_seconds,
            guard=ctx.guard,
        )
    finally:
        await ctx.broker.release(ctx.account.account_id)  # the run's trading connection


async def _print_rebalance(ctx: CommandContext) -> ExecutionReport:
    targets = await ctx.targets()
    report = await execution.print_rebalance(
        ctx.read_only, ctx.account.account_id, targets, ctx.account.settings, ctx.event_id
    )
    note = ctx.live_run_note()
    return replace(report, message=f"{report.message}; {note}") if note else report


async def _print_positions(ctx: CommandContext) -> ExecutionReport:
    return await execution.print_positions(ctx.read_only, ctx.account.account_id, ctx.event_id)


async def _print_equity(ctx: CommandContext) -> ExecutionReport:
    return await execution.print_equity(
        ctx.read_only, ctx.account.account_id, ctx.account.settings, ctx.event_id
    )


async def _print_orders(ctx: CommandContext) -> ExecutionReport:
    return await execution.print_orders(ctx.read_only, ctx.account.account_id, ctx.event_id)


async def _cancel_orders(ctx: CommandContext) -> ExecutionReport:
    try:
        return await execution.cancel_orders(
            ctx.broker,
            ctx.account.account_id,
            ctx.event_id,
            cancel_timeout_seconds=ctx.processing.cancel_timeout_seconds,
            guard=ctx.guard,
        )
    finally:
        await ctx.broker.release(ctx.account.account_id)


# The commands that plan, and so ask the allocation API for their targets.
PLANNING = frozenset({Command.REBALANCE, Command.PRINT_REBALANCE})

COMMANDS: dict[Command, Callable[[CommandContext], Awaitable[ExecutionReport]]] = {
    Command.REBALANCE: _rebalance,
    Command.PRINT_REBALANCE: _print_rebalance,
    Command.PRINT_POSITIONS: _print_positions,
    Command.PRINT_EQUITY: _print_equity,
    Command.PRINT_ORDERS: _print_orders,
    Command.CANCEL_ORDERS: _cancel_orders,
}
