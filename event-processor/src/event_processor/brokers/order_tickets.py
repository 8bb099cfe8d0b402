"""How a planned order becomes an IB order: type, limit price, time in force, outside-RTH (pure).

- `ORDER_TYPE=MKT` (default): market orders.
- `ORDER_TYPE=LMT`: buys limited at ask x (1 + slippage), sells at bid x (1 - slippage), with
  `LIMIT_SLIPPAGE_BPS` in basis points; without a usable bid/ask the planning price stands in.
  Buy limits round up and sell limits round down to the tick, so the order stays marketable.
- `EXTENDED_HOURS_ENABLED` and the extended session (pre-market or after-hours, as IB's contract
  hours say, `sessions.py`): a limit order with outsideRth, because IB holds market orders there.
- `TIME_IN_FORCE`: DAY or GTC, passed through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from event_processor.brokers.models import OrderRequest
from event_processor.brokers.quotes import Quote, is_usable
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


def limit_price(request: OrderRequest, quote: Quote | None, slippage_bps: float) -> float:
    """Ask (buy) or bid (sell) moved by the slippage, rounded to the tick away from the market."""
    side = None if quote is None else (quote.ask if request.action == "BUY" else quote.bid)
    base = side if side is not None and is_usable(side) else request.reference_price
    factor = slippage_bps / 10_000
    if request.action == "BUY":
        raw = base * (1 + factor)
        tick = _tick(raw)
        return round(math.ceil(raw / tick - 1e-9) * tick, 4)
    raw = base * (1 - factor)
    tick = _tick(raw)
    return round(math.floor(raw / tick + 1e-9) * tick, 4)


def order_ticket(
    request: OrderRequest, quote: Quote | None, settings: OrderSettings, session: Session
) -> OrderTicket:
    """The IB order fields for `request` under `settings` in the market's `session` now."""
    extended = settings.extended_hours_enabled and session is Session.EXTENDED
    order_type = "LMT" if extended else settings.order_type
    limit = limit_price(request, quote, settings.limit_slippage_bps) if order_type == "LMT" else None
    return OrderTicket(
        order_type=order_type,
        limit_price=limit,
        time_in_force=settings.time_in_force,
        outside_rth=extended,
    )
