"""The scenario file `rebalancer plan` reads, validated into a `PlanInput`.

{"targets": {"AAA": 0.6, "BBB": 0.4},
 "positions": {"AAA": 10, "OPT1": {"quantity": 5, "sec_type": "OPT"}},
 "prices": {"AAA": 101.5, "BBB": 48.2},
 "cash": 1000.0,
 "net_liquidation": 2115.0,                      # optional: cash + value of the positions
 "settings": {"equity_reserve_percentage": 1.0}} # optional: RebalancingSettings fields

The targets obey the allocation API's rule (`validate_target_weights`): fractions >= 0 that sum to
1 within `DEFAULT_SUM_TOLERANCE` (0.01); percentages such as {"AAA": 60, "BBB": 40} are refused with
a message saying so, the same message the event processor gives for those weights.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from event_processor.allocations import TargetWeightsError, validate_target_weights
from event_processor.planner import Holding, PlanInput
from rebalancer_shared.accounts import RebalancingSettings


class ScenarioError(ValueError):
    """A scenario cannot be planned; `location` is the dotted path of the field at fault."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


class Position(BaseModel):
    """A held position; a bare number in the file means that many shares of stock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: float
    sec_type: str = "STK"

    @field_validator("quantity")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("quantity must be a finite number")
        return value


class Scenario(BaseModel):
    """One account to plan: targets, positions, prices, cash and optional equity and settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[str, float]
    positions: dict[str, Position] = {}
    prices: dict[str, float]
    cash: float
    net_liquidation: float | None = None
    settings: RebalancingSettings = RebalancingSettings()

    @field_validator("positions", mode="before")
    @classmethod
    def _bare_quantities(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: {"quantity": v} if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()
            }
        return value

    @field_validator("targets", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        # Before pydantic's coercion, which would take true or "0.6" for a number. A bad set raises
        # `TargetWeightsError`, not a ValueError, so pydantic lets it through untouched and
        # `parse_scenario` reports the processor's message word for word.
        if isinstance(value, dict):
            return validate_target_weights(value)
        return value  # not a mapping: pydantic names the type

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        for symbol, price in value.items():
            if not (math.isfinite(price) and price > 0):
                raise ValueError(f"{symbol}: price must be a positive finite number")
        return value

    @field_validator("cash", "net_liquidation")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _priced_positions(self) -> Scenario:
        if self.net_liquidation is None:
            for symbol in self.positions:
                if symbol not in self.prices:
                    raise ValueError(
                        f"prices.{symbol}: needed to value the positions (or give net_liquidation)"
                    )
        return self

    def to_plan_input(self) -> PlanInput:
        holdings = {s: Holding(p.quantity, p.sec_type) for s, p in self.positions.items()}
        net_liquidation = self.net_liquidation
        if net_liquidation is None:
            net_liquidation = self.cash + sum(p.quantity * self.prices[s] for s, p in self.positions.items())
        return PlanInput(self.targets, holdings, self.prices, self.cash, net_liquidation, self.settings)


def parse_scenario(raw: object, where: str) -> PlanInput:
    """Validate one scenario; raise `ScenarioError` naming the first bad field under `where`."""
    try:
        return Scenario.model_validate(raw).to_plan_input()
    except ValidationError as exc:
        raise _first_error(exc, where) from None
    except TargetWeightsError as exc:
        raise ScenarioError(f"{where}.targets", exc.message) from None


def _first_error(exc: ValidationError, where: str) -> ScenarioError:
    error = exc.errors(include_url=False)[0]
    path = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    # Our validators name the key inside the mapping first: "BBB: price must be ..." -> prices.BBB
    head, sep, rest = message.partition(": ")
    if sep and " " not in head:
        if "." in head:
            return ScenarioError(f"{where}.{head}", rest)
        path.append(head)
        message = rest
    return ScenarioError(".".join([where, *path]), message)
