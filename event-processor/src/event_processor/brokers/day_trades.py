"""The day-trade facts a broker reports: which trading day it is, and how many day trades remain.

A day trade (FINRA Rule 4210) is buying and selling the same security on the same trading day; a US
trading day is a New York date, whatever the time zone of the gateway or of this machine. IB reports
the day trades the pattern-day-trader rule leaves a margin account under 25,000 USD as the account
value `DayTradesRemaining`: a count, or -1 when nothing limits the account.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from event_processor.brokers.models import BrokerExecution

NEW_YORK = ZoneInfo("America/New_York")
UNLIMITED = -1


def trading_day(moment: datetime) -> date:
    """The US trading day `moment` (aware) falls on: its New York date."""
    return moment.astimezone(NEW_YORK).date()


def on_trading_day(executions: Iterable[BrokerExecution], day: date) -> list[BrokerExecution]:
    """The executions of `day` (a broker may hand over earlier days too: TWS's trade log can)."""
    return [e for e in executions if trading_day(e.time) == day]


def parse_day_trades_remaining(raw: str | None) -> int | None:
    """IB's `DayTradesRemaining` as a number (-1: unlimited), or None when missing or not a number."""
    try:
        number = float(raw) if raw is not None else math.nan
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return max(int(number), UNLIMITED)
