"""Which executions a `reqExecutions` gets, as IB decides: the trade log's days, the client, the filter.

TWS API docs, "Executions and Commissions" / "Request Execution Details": by default only the
executions since midnight are delivered (TWS's Trade Log setting "Show trades for ..." widens that to
up to 7 days; IB Gateway cannot); "Order Management", "ClientId 0 and the Master Client ID": a
connection that is neither client 0 nor the master client id gets only its own client's executions.
The ExecutionFilter narrows further: clientId (0: any), acctCode, time ("only those executions
reported after the specified time"), symbol, secType, side ("BUY"/"SELL").

A filter time is "yyyymmdd hh:mm:ss" in the gateway's time zone (New York for the fake), the same with
a zone name after it, or "yyyymmdd-hh:mm:ss" in UTC, as IB reads date-times since TWS 10.17.
The fake's days are New York days on its market clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tests.fakes.tws.account import FillRecord
from tests.fakes.tws.market_hours import NEW_YORK

MAX_TRADE_LOG_DAYS = 7
_SIDES = {"BUY": "BUY", "BOT": "BUY", "SELL": "SELL", "SLD": "SELL"}


@dataclass(frozen=True)
class ExecutionQuery:
    """A reqExecutions as it arrived: `[7, 3, reqId, clientId, acctCode, time, symbol, secType,
    exchange, side]`."""

    req_id: int
    client_id: int
    account: str
    since: float | None
    symbol: str
    sec_type: str
    side: str

    @classmethod
    def from_fields(cls, fields: Sequence[str]) -> ExecutionQuery:
        padded = [*fields, *[""] * (10 - len(fields))]
        return cls(
            req_id=int(padded[2]),
            client_id=int(padded[3] or 0),
            account=padded[4],
            since=parse_filter_time(padded[5]),
            symbol=padded[6],
            sec_type=padded[7],
            side=_SIDES.get(padded[9].upper(), ""),
        )

    def matches(self, record: FillRecord) -> bool:
        wanted = (
            (self.client_id, record.client_id),
            (self.account, record.account),
            (self.symbol, record.symbol),
            (self.sec_type, "STK"),
            (self.side, record.action),
        )
        if any(want and want != have for want, have in wanted):
            return False
        return self.since is None or record.executed_at >= self.since


def parse_filter_time(text: str) -> float | None:
    """Epoch seconds of an ExecutionFilter time, or None when the filter has none."""
    text = text.strip()
    if not text:
        return None
    if "-" in text:
        return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC).timestamp()
    day, clock, *zone = text.split()
    moment = datetime.strptime(f"{day} {clock}", "%Y%m%d %H:%M:%S")
    return moment.replace(tzinfo=ZoneInfo(zone[0]) if zone else NEW_YORK).timestamp()


def new_york_day(epoch: float) -> date:
    return datetime.fromtimestamp(epoch, NEW_YORK).date()


def trade_log_start(market_time: float, days: int) -> float:
    """Midnight in New York `days` - 1 days before the market clock's day (1: today since midnight)."""
    kept = min(max(days, 1), MAX_TRADE_LOG_DAYS)
    first = new_york_day(market_time) - timedelta(days=kept - 1)
    return datetime.combine(first, time(0, 0), NEW_YORK).timestamp()


def execution_time(epoch: float) -> str:
    """An execution's time as IB sends it at server version 178: UTC, "yyyymmdd-hh:mm:ss"."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%d-%H:%M:%S")
