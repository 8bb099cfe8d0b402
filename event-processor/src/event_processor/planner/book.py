"""From `PlanInput` to a checked book of positions: what is targeted, what is sold, what is left alone.

Every check that can refuse a plan lives here, so nothing downstream ever sees a bad price or weight:
a missing, zero, negative, infinite or NaN price of a symbol that must trade, a NaN, infinite or
negative weight, a short stock position, a targeted symbol held as something other than stock.
Holdings the plan does not trade (other security types, other currencies, foreign listings) are
sorted out here too, each with its reason code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from event_processor.planner.errors import PlanError
from event_processor.planner.models import STOCK, TRADING_CURRENCY, Holding, PlanInput, SkippedTrade

WHOLE_UNIT = 1.0
FRACTIONAL_UNIT = 0.0001
# Quantities are counted in units with this much slack, so 0.3 shares held is 3,000 units, not 2,999.
_UNIT_SLACK = 1e-6


@dataclass(frozen=True)
class TargetLine:
    """A stock symbol with a positive target weight; positions are `remainder + units x unit` shares."""

    symbol: str
    weight: float
    price: float
    held_units: int
    remainder: float


@dataclass(frozen=True)
class Liquidation:
    """A held stock symbol the targets leave out: sell `sell_units`, keep the unsellable remainder."""

    symbol: str
    price: float
    held_units: int
    sell_units: int
    remainder: float


@dataclass(frozen=True)
class Book:
    """The checked input: equity, cash, the unit size, and every stock position sorted by symbol."""

    total_equity: float
    reserve_percentage: float
    cash: float
    unit: float
    targets: tuple[TargetLine, ...]
    liquidations: tuple[Liquidation, ...]
    skipped: tuple[SkippedTrade, ...]

    @property
    def reserve_amount(self) -> float:
        return self.total_equity * self.reserve_percentage / 100.0

    @property
    def available(self) -> float:
        return self.total_equity - self.reserve_amount


def split_units(quantity: float, unit: float) -> tuple[int, float]:
    """(whole units, remainder in shares) of a non-negative quantity."""
    units = math.floor(quantity / unit + _UNIT_SLACK)
    remainder = quantity - units * unit
    return units, remainder if remainder > 1e-9 else 0.0


def build_book(inp: PlanInput) -> Book:
    """Check the input and sort every position into targets, liquidations and skips; raise `PlanError`."""
    total = _positive_finite(inp.net_liquidation, "net_liquidation", "net liquidation")
    if not math.isfinite(inp.cash):
        raise PlanError(f"cash must be a finite number, got {inp.cash!r}", field="cash")
    reserve = float(inp.settings.equity_reserve_percentage)
    if not (math.isfinite(reserve) and 0.0 <= reserve <= 10.0):
        raise PlanError(f"equity reserve must be 0-10 %, got {reserve!r}", field="settings")
    unit = FRACTIONAL_UNIT if inp.settings.fractional_shares else WHOLE_UNIT
    weights = _effective_weights(inp.targets)
    skipped: list[SkippedTrade] = []
    targets: list[TargetLine] = []
    liquidations: list[Liquidation] = []
    for symbol in sorted(set(weights) | set(inp.holdings)):
        holding = inp.holdings.get(symbol, Holding(0.0))
        left_alone = _left_alone(symbol, holding, weights)
        if left_alone is not None:
            skipped.append(left_alone)
            continue
        quantity = _held_quantity(symbol, holding)
        if symbol in weights:
            held, remainder = split_units(quantity, unit)
            price = _price(inp.prices, symbol)
            targets.append(TargetLine(symbol, weights[symbol], price, held, remainder))
        elif quantity > 0:
            liquidations.append(_liquidation(inp, symbol, quantity, unit, skipped))
    return Book(total, reserve, inp.cash, unit, tuple(targets), tuple(liquidations), tuple(skipped))


def _effective_weights(targets: Mapping[str, float]) -> dict[str, float]:
    """Positive weights; a set summing above 1 is scaled down to 1 (it could not all be bought)."""
    for symbol, weight in targets.items():
        if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
            raise PlanError(
                f"weight of {symbol} must be a finite number >= 0, got {weight!r}",
                symbol=symbol,
                field="targets",
            )
    positive = {symbol: float(weight) for symbol, weight in targets.items() if weight > 0}
    total = math.fsum(positive.values())  # exact, so key order cannot change the result
    if total > 1.0:
        return {symbol: weight / total for symbol, weight in positive.items()}
    return positive


def _positive_finite(value: float, field: str, name: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise PlanError(f"{name} must be a positive finite number, got {value!r}", field=field)
    return float(value)


def _price(prices: Mapping[str, float], symbol: str) -> float:
    price = prices.get(symbol)
    if price is None:
        raise PlanError(f"no price for {symbol}, which must trade", symbol=symbol, field="prices")
    if not (math.isfinite(price) and price > 0):
        raise PlanError(
            f"price of {symbol} must be a positive finite number, got {price!r}",
            symbol=symbol,
            field="prices",
        )
    return float(price)


def _held_quantity(symbol: str, holding: Holding) -> float:
    quantity = holding.quantity
    if not math.isfinite(quantity):
        raise PlanError(
            f"quantity of {symbol} is not a number: {quantity!r}", symbol=symbol, field="holdings"
        )
    if quantity < 0:
        raise PlanError(
            f"short position in {symbol} ({quantity:g}); the planner never trades shorts, close it by hand",
            symbol=symbol,
            field="holdings",
        )
    return float(quantity)


def _not_traded(holding: Holding) -> tuple[str, str]:
    """(reason code, what the holding is) for a holding that is not `tradable`."""
    if holding.sec_type != STOCK:
        return "non_stock_holding", f"held as {holding.sec_type}, not stock"
    if holding.currency != TRADING_CURRENCY:
        return "other_currency", f"held in {holding.currency}, not {TRADING_CURRENCY}"
    return "foreign_listing", "held as another listing than its US one"


def _left_alone(symbol: str, holding: Holding, weights: Mapping[str, float]) -> SkippedTrade | None:
    if holding.tradable:
        return None
    reason, what = _not_traded(holding)
    if symbol in weights:
        raise PlanError(
            f"{symbol} is a target but is {what}; resolve it by hand", symbol=symbol, field="holdings"
        )
    where = f" on {holding.exchange}" if holding.exchange else ""
    which = f" (conId {holding.con_id})" if holding.con_id else ""
    detail = (
        f"{holding.quantity:g}{where}{which} {what}; only US-listed stock in {TRADING_CURRENCY} "
        "is traded, left alone"
    )
    return SkippedTrade(symbol, reason, detail)


def _liquidation(
    inp: PlanInput, symbol: str, quantity: float, unit: float, skipped: list[SkippedTrade]
) -> Liquidation:
    held, remainder = split_units(quantity, unit)
    sell = held
    if unit < WHOLE_UNIT and 0 < held * unit < inp.settings.min_trade_shares:
        skipped.append(
            SkippedTrade(
                symbol,
                "below_min_shares",
                f"{quantity:g} shares held, under the minimum trade of {inp.settings.min_trade_shares:g}",
            )
        )
        sell = 0
    price = _price(inp.prices, symbol) if sell > 0 else _optional_price(inp.prices, symbol)
    if remainder > 0:
        skipped.append(
            SkippedTrade(
                symbol,
                "fractional_remainder",
                f"{remainder:.6g} shares left: orders trade whole units of {unit:g} share",
            )
        )
    return Liquidation(symbol, price, held, sell, remainder)


def _optional_price(prices: Mapping[str, float], symbol: str) -> float:
    """A price used only to value what cannot be sold; 0 when there is no usable one."""
    price = prices.get(symbol)
    return float(price) if price is not None and math.isfinite(price) and price > 0 else 0.0
