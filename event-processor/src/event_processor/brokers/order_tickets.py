"""How a planned order becomes an IB order: type, limit price, time in force, outside-RTH (pure).

- `ORDER_TYPE=MKT` (default): market orders.
- `ORDER_TYPE=LMT`: buys limited at ask x (1 + slippage), sells at bid x (1 - slippage), with
  `LIMIT_SLIPPAGE_BPS` in basis points. Only a fresh bid/ask whose spread is neither crossed nor
  wider than `ibkr.max_spread_pct` of the midpoint is used (`quotes.limit_side`); otherwise the
  planning price stands in.
  Buy limits round up and sell limits round down to the tick, so the order stays marketable.
- `EXTENDED_HOURS_ENABLED` and the extended session (pre-market or after-hours, as IB's contract
  hours say, `sessions.py`): a limit order with outsideRth, because IB holds market orders there.
- `TIME_IN_FORCE`: DAY or GTC, passed through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from event_processor.brokers.models import OrderRequest
from event_processor.brokers.quotes import PriceRules, Quote, limit_side
from event_processor.brokers.sessions import Session
from rebalancer_shared.config import OrderSettings


@dataclass(frozen=True)
class OrderTicket:
    """The order fields the adapter sends for one request."""

    order_type: str
    limit_price: float | None
    time_in_force: str
    outside_rth: bool


def _tick(price: float) -> float:
    # US stocks trade in cents from $1 up, in hundredths of a cent below.
    return 0.01 if price >= 1.0 else 0.0001


def limit_price(request: OrderRequest, side: float | None, slippage_bps: float) -> float:
    """`side` (the ask of a buy, the bid of a sell; else the planning price) moved by the slippage,
    rounded to the tick away from the market."""
    base = side if side is not None else request.reference_price
    factor = slippage_bps / 10_000
    if request.action == "BUY":
        raw = base * (1 + factor)
        tick = _tick(raw)
        return round(math.ceil(raw / tick - 1e-9) * tick, 4)
    raw = base * (1 - factor)
    tick = _tick(raw)
    return round(math.floor(raw / tick + 1e-9) * tick, 4)


def order_ticket(
    request: OrderRequest,
    quote: Quote | None,
    settings: OrderSettings,
    session: Session,
    now: datetime,
    rules: PriceRules,
) -> OrderTicket:
    """The IB order fields for `request` under `settings` in the market's `session` at time `now`."""
    extended = settings.extended_hours_enabled and session is Session.EXTENDED
    order_type = "LMT" if extended else settings.order_type
    limit = None
    if order_type == "LMT":
        side = limit_side(quote, request.action, now, rules)
        limit = limit_price(request, side, settings.limit_slippage_bps)
    return OrderTicket(
        order_type=order_type,
        limit_price=limit,
        time_in_force=settings.time_in_force,
        outside_rth=extended,
    )
