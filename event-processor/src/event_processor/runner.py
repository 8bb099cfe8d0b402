"""`EventRunner`: the worker's handler. Runs an event's command and records the run and its orders.

A run row is written when the command starts (or the run does not start: nothing trades without a
record) and again when it ends. Only what reads nothing of the account goes before it: a planning
command's allocation request is sent at once and answered while the claim's history and the run
row are written (`CommandContext.with_targets_asked`), those two side by side (`_save_start`).
Orders are recorded as they are placed (`RecordedOrders`). A run that does not end by itself still
ends in the history: stopped by a lost lease or a shutdown it is saved `interrupted` (or `unknown`
when an order's outcome was never read); killed outright, it is closed by the history when its
event moves on (store/history_writes.py). The final save is retried while it fails; if it cannot be
written the run raises, so the event is not completed without it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from event_processor.allocations import AllocationClient
from event_processor.brokers import Broker
from event_processor.commands import COMMANDS, CommandContext
from event_processor.execution import ExecutionFailed, ExecutionReport
from event_processor.order_journal import RecordedOrders
from event_processor.results import result_of
from event_processor.retry_policy import RetryPolicy
from event_processor.worker import RunTicket
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import OrderSettings, ProcessingSettings
from rebalancer_shared.failures import NeedsAttention
from rebalancer_shared.metrics import Counter, count
from rebalancer_shared.queue import EventQueue, LeaseExpiredError
from rebalancer_shared.store import EventRowMissing, EventStore, RunRecord, RunStatus

log = structlog.get_logger(__name__)
# How long the final save of a run is retried before the run gives up (and its event retries).
FINAL_SAVE_SECONDS = 10.0


class UnknownAccountError(NeedsAttention):
    """The event names an account that accounts.yaml no longer lists."""


def _now() -> datetime:
    return datetime.now(UTC)


class EventRunner:
    """Runs commands for the accounts of accounts.yaml against one broker and allocation API."""

    def __init__(
        self,
        accounts: Mapping[str, Account],
        broker: Broker,
        allocations: AllocationClient,
        store: EventStore,
        queue: EventQueue,
        processing: ProcessingSettings,
        orders: OrderSettings | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.accounts = accounts
        self.broker = broker
        self.allocations = allocations
        self.store = store
        self.queue = queue
        self.processing = processing
        self.order_type = (orders or OrderSettings()).order_type
        self.policy = policy

    async def handle(self, ticket: RunTicket) -> None:
        """Run the event's command once; raise when it did not succeed (the event then retries)."""
        event = ticket.event
        account = self.accounts.get(event.account_id)
        if account is None:
            raise UnknownAccountError(
                f"account {event.account_id} is not in accounts.yaml: add it, or remove the event"
            )
        run = RunRecord(
            event_id=event.event_id,
            attempt=ticket.attempt,
            account_id=event.account_id,
            exec_command=event.exec_command.value,
            execution_mode=event.exec_command.execution_mode.value,
            worker=ticket.worker,
            status=RunStatus.RUNNING,
            started_at=_now(),
            run_id=uuid.uuid4(),
        )
        journal = RecordedOrders(self.store, run.run_id, event.event_id, ticket.fence, self.order_type)
        context = CommandContext(event, account, self.broker, self.allocations, self.processing, journal)
        if self.policy is not None:
            context = replace(context, live_run_note=self.policy.live_run_note)
        context = context.with_targets_asked()  # read-only: on its way while the history is written
        try:
            await self._save_start(run, ticket.history_written)
            await self._run(run, context, journal)
        finally:
            context.forget_targets()

    async def _save_start(self, run: RunRecord, history_written: Awaitable[None]) -> None:
        """The run's row, written alongside the claim's history. It refers to its event's row, which
        the event's acceptance wrote already unless that write was postponed (the outbox keeps it);
        then the claim's write brings it, and the run row follows."""
        try:
            await self.store.save_run(run)
        except EventRowMissing:
            await history_written
            await self.store.save_run(run)

    async def _run(self, run: RunRecord, context: CommandContext, journal: RecordedOrders) -> None:
        try:
            report = await COMMANDS[context.event.exec_command](context)
        except ExecutionFailed as exc:
            await self._finish(run, journal, exc.report, error=str(exc))
            raise
        except (asyncio.CancelledError, LeaseExpiredError) as exc:
            error = str(exc) or "stopped: its lease was lost, or the processor shut down"
            status = RunStatus.UNKNOWN if journal.unsettled else RunStatus.INTERRUPTED
            await asyncio.shield(self._save_or_log(run, status=status, error=error))
            raise
        except Exception as exc:
            await self._save_or_log(run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        await self._finish(run, journal, report)

    async def _finish(
        self, run: RunRecord, journal: RecordedOrders, report: ExecutionReport, error: str | None = None
    ) -> None:
        finished = _now()
        result = result_of(COMMANDS_BY_NAME[run.exec_command], report, finished)
        status = RunStatus(result["status"])
        if report.orders:
            await journal.record_all(report.orders)
            await count(
                self.queue.redis,
                self.queue.keys.prefix,
                Counter.ORDERS_PLACED,
                run.exec_command,
                len(report.orders),
            )
        await self._save(
            run,
            status=status,
            error=error,
            message=report.message,
            equity_info=result["equity_info"],
            plan=report.plan.to_dict() if report.plan else None,
            result=result,
            finished_at=finished,
        )
        log.info("run finished", outcome=report.outcome, message=report.message, orders=len(report.orders))

    async def _save(self, run: RunRecord, **changes: Any) -> None:
        changes.setdefault("finished_at", _now())
        record = RunRecord(**{**run.__dict__, **changes})
        retrying = AsyncRetrying(
            stop=stop_after_delay(FINAL_SAVE_SECONDS),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self.store.save_run(record)

    async def _save_or_log(self, run: RunRecord, **changes: Any) -> None:
        """Save how a run ended without hiding why it ended (the history closes it otherwise)."""
        try:
            await self._save(run, **changes)
        except Exception as exc:
            log.error("the run's end could not be recorded", error=str(exc).splitlines()[0], **changes)


COMMANDS_BY_NAME = {command.value: command for command in COMMANDS}
