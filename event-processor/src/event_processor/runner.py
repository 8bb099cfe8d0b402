"""`EventRunner`: the worker's handler. Runs an event's command and records the run and its orders.

A run row is written when the command starts and again when it ends (success, partial or failed,
with its result, plan and equity information), so a processor killed mid-run leaves a run marked
`running` that the retry's own run row follows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from event_processor.allocations import AllocationClient
from event_processor.brokers import Broker
from event_processor.commands import COMMANDS, CommandContext
from event_processor.execution import ExecutionFailed, ExecutionReport
from event_processor.results import execution_mode, order_records, result_of
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import ProcessingSettings
from rebalancer_shared.errors import RebalancerError
from rebalancer_shared.events import Event
from rebalancer_shared.metrics import Counter, count
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore, RunRecord

log = structlog.get_logger(__name__)


class UnknownAccountError(RebalancerError):
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
    ) -> None:
        self.accounts = accounts
        self.broker = broker
        self.allocations = allocations
        self.store = store
        self.queue = queue
        self.processing = processing

    async def handle(self, event: Event, attempt: int, worker: str) -> None:
        """Run the event's command once; raise when it did not succeed (the event then retries)."""
        account = self.accounts.get(event.account_id)
        if account is None:
            raise UnknownAccountError(
                f"account {event.account_id} is not in accounts.yaml: add it, or remove the event"
            )
        run = RunRecord(
            event_id=event.event_id,
            attempt=attempt,
            account_id=event.account_id,
            exec_command=event.exec_command.value,
            execution_mode=execution_mode(event.exec_command),
            worker=worker,
            status="running",
            started_at=_now(),
            run_id=uuid.uuid4(),
        )
        await self.store.save_run(run)
        context = CommandContext(event, account, self.broker, self.allocations, self.processing)
        try:
            report = await COMMANDS[event.exec_command](context)
        except ExecutionFailed as exc:
            await self._finish(run, exc.report, error=str(exc))
            raise
        except Exception as exc:
            await self._save(run, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        await self._finish(run, report)

    async def _finish(self, run: RunRecord, report: ExecutionReport, error: str | None = None) -> None:
        finished = _now()
        command = COMMANDS_BY_NAME[run.exec_command]
        result = result_of(command, report, finished)
        await self._save(
            run,
            status=result["status"] if error is None else report.outcome,
            error=error,
            message=report.message,
            equity_info=result["equity_info"],
            plan=report.plan.to_dict() if report.plan else None,
            result=result,
            finished_at=finished,
        )
        if report.orders:
            await self.store.save_orders(run.run_id, run.event_id, order_records(report.orders))
            await count(
                self.queue.redis,
                self.queue.keys.prefix,
                Counter.ORDERS_PLACED,
                run.exec_command,
                len(report.orders),
            )
        log.info("run finished", outcome=report.outcome, message=report.message, orders=len(report.orders))

    async def _save(self, run: RunRecord, **changes: Any) -> None:
        changes.setdefault("finished_at", _now())
        await self.store.save_run(RunRecord(**{**run.__dict__, **changes}))


COMMANDS_BY_NAME = {command.value: command for command in COMMANDS}
