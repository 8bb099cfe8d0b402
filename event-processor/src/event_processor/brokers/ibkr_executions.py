"""The account's executions of the day, read through ib_async's `reqExecutions`.

What IB hands over (TWS API docs, "Executions and Commissions"; tests/fakes/tws/README.md):
- only the executions since midnight (up to 7 days when TWS's Trade Log is set so): the day is
  picked here again, by the gateway's clock (reqCurrentTime) as a New York date;
- to a connection that is neither client 0 nor the master API client id, only the executions of its
  own client id. So they are asked for on every connection the broker holds for the account: the
  reads connection (`IB_CLIENT_ID`; set it to the gateway's master API client id to see orders
  entered by hand in TWS or by other programs too) and, during a mutating run, the account's trading
  connection (which sees what every earlier run of ours placed for the account). Answers are merged
  by exec id;
- the time as "yyyymmdd-hh:mm:ss" in UTC at this server version (ib_insync #671). ib_async reads a
  time without a zone in `IB.TimezoneTWS`, else in this machine's zone, so every connection is told
  UTC (`utc_execution_times`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from ib_async import IB, ExecutionFilter, Fill

from event_processor.brokers.day_trades import trading_day
from event_processor.brokers.ibkr_connection import IbkrConnection
from event_processor.brokers.models import BrokerExecution

EXECUTION_TIME_ZONE = "UTC"
# IB stamps an execution to the whole second, and shows it in the positions only a moment after it
# (ib_async #15; the fake's `position_lag_seconds`). Positions read before the newest execution is
# this old by the gateway's clock may still hold what it sold or lack what it bought.
EXECUTION_TIME_RESOLUTION_SECONDS = 1.0
_SIDES = {"BOT": "BUY", "SLD": "SELL"}


def utc_execution_times(ib: IB) -> IB:
    """`ib`, reading the zone-less execution times IB sends as UTC."""
    ib.TimezoneTWS = EXECUTION_TIME_ZONE
    return ib


def _execution(fill: Fill) -> BrokerExecution:
    execution = fill.execution
    return BrokerExecution(
        symbol=fill.contract.symbol,
        con_id=int(fill.contract.conId),
        side="BUY" if _SIDES.get(execution.side, execution.side) == "BUY" else "SELL",
        shares=float(execution.shares),
        price=float(execution.price),
        time=execution.time,
        exec_id=execution.execId,
        perm_id=int(execution.permId or 0),
        order_ref=execution.orderRef or "",
        order_id=int(execution.orderId or 0),
    )


async def executions_on(
    sources: Sequence[tuple[IbkrConnection, IB]], account_id: str, day: date
) -> list[BrokerExecution]:
    """The account's executions on `day` that any of the connections sees, once each, by time."""
    found: dict[str, BrokerExecution] = {}
    for connection, ib in sources:
        what = f"executions of {account_id} ({connection.purpose})"
        fills = await connection.request(what, ib.reqExecutionsAsync(ExecutionFilter(acctCode=account_id)))
        for fill in fills:
            if fill.execution.acctNumber == account_id and trading_day(fill.execution.time) == day:
                found.setdefault(fill.execution.execId, _execution(fill))
    return sorted(found.values(), key=lambda e: (e.time, e.exec_id))


def positions_settle_in(
    executions: Sequence[BrokerExecution], gateway_now: datetime, lag_seconds: float
) -> float:
    """Seconds until positions read from IB show every one of `executions` (0.0: they do now).

    The newest execution's time is truncated to the second, so it may have happened up to a second
    later than it says; the positions show it `lag_seconds` after that."""
    if not executions:
        return 0.0
    newest = max(e.time for e in executions)
    shown_at = (newest - gateway_now).total_seconds() + EXECUTION_TIME_RESOLUTION_SECONDS + lag_seconds
    return max(0.0, shown_at)
