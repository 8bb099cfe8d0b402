"""From the broker's view of an account to the planner's holdings: what may be traded, and as what.

IB Gateway repeats positions, lets them lag fills, lists one ticker on several exchanges and keeps
accounts in several base currencies (DESIGN.md section 6). These pure rules keep the engine from
trading anything it cannot identify:

- The account's base currency must be the trading currency (USD); any other account would be sized
  as if its figures were dollars, so it is refused before anything is done.
- Positions are keyed by conId: a repeated row replaces the earlier one (the last wins), never adds.
- A stock is traded under its symbol only when it is that symbol's US listing: in USD, with the conId
  of the contract the broker routes the symbol to (SMART, USD). Anything else keeps a key of its own,
  such as "SHEL (LSE GBP, conId 10004)", and the planner leaves it alone with a reason.
- After the sells, the holdings the buys are planned from are the first snapshot's less the fills,
  until the positions IB reports show them (they lag the fills).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace

from event_processor.brokers.models import AccountValues, BrokerPosition, Listing, OrderResult
from event_processor.planner import Holding, PlannedOrder
from event_processor.planner.models import STOCK, TRADING_CURRENCY
from rebalancer_shared.failures import NeedsAttention

QUANTITY_TOLERANCE = 1e-6


class UnsupportedAccountError(NeedsAttention):
    """The account cannot be traded as it is (its base currency, say); nothing was done."""


def require_trading_currency(values: AccountValues) -> None:
    """Raise `UnsupportedAccountError` unless the account's figures are in the trading currency."""
    if values.currency != TRADING_CURRENCY:
        raise UnsupportedAccountError(
            f"account {values.account_id}: base currency {values.currency}: not supported yet; "
            f"only {TRADING_CURRENCY} accounts are traded"
        )


def unique_positions(positions: Sequence[BrokerPosition]) -> tuple[BrokerPosition, ...]:
    """One position per contract (conId); of repeated rows the last one wins."""
    latest: dict[Hashable, BrokerPosition] = {}
    for p in positions:
        latest[p.con_id or (p.symbol, p.sec_type, p.local_symbol, p.currency)] = p
    return tuple(latest.values())


def listing_candidates(positions: Sequence[BrokerPosition]) -> list[str]:
    """Symbols whose US listing decides whether they are traded: the stocks held in USD."""
    return sorted({p.symbol for p in positions if p.sec_type == STOCK and p.currency == TRADING_CURRENCY})


def holding_of(position: BrokerPosition, listings: Mapping[str, Listing]) -> tuple[str, Holding]:
    """The planner's key and holding for one position."""
    p = position
    where = p.primary_exchange or p.exchange
    if p.sec_type != STOCK:
        # Under a key of its own, so an option on AAPL never hides the AAPL shares.
        key = f"{p.local_symbol or p.symbol} ({p.sec_type})"
        return key, Holding(p.quantity, p.sec_type, p.currency, exchange=where, con_id=p.con_id)
    listing = listings.get(p.symbol)
    if p.currency == TRADING_CURRENCY and listing is not None and listing.con_id == p.con_id:
        return p.symbol, Holding(p.quantity, STOCK, p.currency, exchange=where, con_id=p.con_id)
    key = f"{p.symbol} ({where or 'unknown exchange'} {p.currency}, conId {p.con_id})"
    return key, Holding(p.quantity, STOCK, p.currency, us_listing=False, exchange=where, con_id=p.con_id)


def holdings_of(positions: Sequence[BrokerPosition], listings: Mapping[str, Listing]) -> dict[str, Holding]:
    """Planner holdings by key: US listings by symbol, everything else under a key of its own."""
    holdings: dict[str, Holding] = {}
    for position in unique_positions(positions):
        key, holding = holding_of(position, listings)
        holdings[key] = holding
    return holdings


def traded_symbols(targets: Mapping[str, float], holdings: Mapping[str, Holding]) -> list[str]:
    """The symbols the plan may trade, so the ones that need a price."""
    return sorted(set(targets) | {key for key, holding in holdings.items() if holding.tradable})


def expected_after(holdings: Mapping[str, Holding], orders: Sequence[OrderResult]) -> dict[str, float]:
    """Quantity of each traded symbol once the orders' fills are in the positions."""
    expected: dict[str, float] = {}
    for order in orders:
        before = expected.get(order.symbol, holdings.get(order.symbol, Holding(0.0)).quantity)
        signed = order.filled_quantity if order.action == "BUY" else -order.filled_quantity
        expected[order.symbol] = before + signed
    return expected


def shows(holdings: Mapping[str, Holding], expected: Mapping[str, float]) -> bool:
    """Whether the holdings already show the expected quantities."""
    return all(
        abs(holdings.get(key, Holding(0.0)).quantity - quantity) <= QUANTITY_TOLERANCE
        for key, quantity in expected.items()
    )


def with_quantities(
    holdings: Mapping[str, Holding], before: Mapping[str, Holding], expected: Mapping[str, float]
) -> dict[str, Holding]:
    """`holdings` with the expected quantities put in (a symbol sold out is dropped)."""
    result = dict(holdings)
    for key, quantity in expected.items():
        if quantity <= QUANTITY_TOLERANCE:
            result.pop(key, None)
        else:
            result[key] = replace(result.get(key, before.get(key, Holding(0.0))), quantity=quantity)
    return result


def sell_proceeds(sells: Sequence[OrderResult]) -> float:
    """Cash the sells' fills brought in (before commissions)."""
    return math.fsum(o.filled_quantity * o.avg_fill_price for o in sells)


def buys_within(orders: Sequence[PlannedOrder], budget: float, unit: float) -> list[PlannedOrder]:
    """The buys, cut (in order, to whole `unit`s) to what `budget` pays for at their estimated prices.

    A re-plan at fresh prices may fund its buys with sells it also plans; only its buys are placed,
    so they must fit the cash the account has above its reserve.
    """
    kept: list[PlannedOrder] = []
    for order in orders:
        affordable = math.floor(max(budget, 0.0) / (order.est_price * unit) + QUANTITY_TOLERANCE) * unit
        quantity = round(min(order.quantity, affordable), 4)
        if quantity <= 0:
            continue
        value = quantity * order.est_price
        kept.append(replace(order, quantity=quantity, est_value=value))
        budget -= value
    return kept
