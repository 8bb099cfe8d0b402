"""What a broker hands the engine and takes from it: plain frozen data, no client library types."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from rebalancer_shared.errors import RebalancerError
from rebalancer_shared.failures import NeedsAttention

Action = Literal["BUY", "SELL"]

# IB's order states that end an order's life; anything else may still fill.
DONE_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected"})


class BrokerError(RebalancerError):
    """The broker could not do what was asked; the message says what failed (the event retries)."""


class UnknownSymbolError(BrokerError, NeedsAttention):
    """The broker does not know a symbol the allocation asks for (or finds it ambiguous)."""


class UncancellableOrdersError(BrokerError, NeedsAttention):
    """The account has open orders no API client of ours can cancel (another client id, or TWS)."""


@dataclass(frozen=True)
class AccountValues:
    """The two account figures the planner needs, in the account's base currency `currency`."""

    account_id: str
    net_liquidation: float
    total_cash: float
    currency: str = "USD"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BrokerPosition:
    """One position and its contract's identity: `con_id` names the listing (a ticker may be listed on
    several exchanges), `exchange` / `primary_exchange` where it is listed, `currency` what it trades in.
    `sec_type` tells stocks from everything else (left alone)."""

    symbol: str
    quantity: float
    sec_type: str = "STK"
    avg_cost: float = 0.0
    local_symbol: str = ""
    con_id: int = 0
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = "USD"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Listing:
    """A stock symbol's US listing as the broker routes it (SMART, in USD): the contract orders use."""

    symbol: str
    con_id: int
    primary_exchange: str = ""
    currency: str = "USD"


@dataclass(frozen=True)
class OpenOrder:
    """An order still working at the broker (any client's)."""

    order_id: int
    perm_id: int
    client_id: int
    symbol: str
    action: str
    quantity: float
    order_type: str
    status: str
    order_ref: str
    filled_quantity: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OrderRequest:
    """An order to place: `reference_price` is the price it was planned at (LMT falls back to it)."""

    symbol: str
    action: Action
    quantity: float
    reference_price: float


@dataclass(frozen=True)
class OrderResult:
    """An order as sent and its latest state: ids, status, fills, and the broker's last word on it."""

    symbol: str
    action: Action
    quantity: float
    order_type: str
    limit_price: float | None
    time_in_force: str
    outside_rth: bool
    order_id: int
    perm_id: int
    order_ref: str
    status: str
    filled_quantity: float = 0.0
    avg_fill_price: float = 0.0
    message: str = ""

    @property
    def is_done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def is_filled(self) -> bool:
        return self.filled_quantity >= self.quantity - 1e-9

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BrokerExecution:
    """One execution (a fill, or part of one) in the account: the listing, the side, when (aware)."""

    symbol: str
    con_id: int
    side: Action
    shares: float
    price: float
    time: datetime
    exec_id: str = ""
    perm_id: int = 0  # the order's permanent id at IB (0: not known)
    order_ref: str = ""  # the order's reference: ours is the event id
    order_id: int = 0  # the order's id, unique per API client id only

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "time": self.time.isoformat()}
