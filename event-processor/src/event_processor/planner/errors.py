"""The planner's error: a plan that must not be traded, with the symbol and input field at fault."""

from __future__ import annotations

from rebalancer_shared.errors import RebalancerError


class PlanError(RebalancerError):
    """The input cannot be planned safely (bad price or weight, short position, reserve out of reach).

    `field` names the input mapping at fault (``"prices"``, ``"targets"``, ``"holdings"``, ...) and
    `symbol` the key inside it, so a caller can point at the exact spot; both may be None.
    The event that hit this error is retried; nothing is traded on a bad input.
    """

    def __init__(self, message: str, *, symbol: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.symbol = symbol
        self.field = field
