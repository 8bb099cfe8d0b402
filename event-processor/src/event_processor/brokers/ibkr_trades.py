"""What IB says about orders, in the broker's terms: an order as placed, as found open, and as it ended.

`order_result` reads a trade as ib_async keeps it (status, fills, its log of IB's errors) into an
`OrderResult`; IB's rejection of an order (error 201 with its reason, 10243 for a fractional size,
...) becomes its `message`. `uncancellable_message` explains an open order placed by another client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ib_async import Trade

from event_processor.brokers.models import OpenOrder, OrderRequest, OrderResult
from event_processor.brokers.order_tickets import OrderTicket


@dataclass
class Placed:
    """An order this process placed: the trade ib_async keeps, what was asked, and on which connection."""

    trade: Trade
    request: OrderRequest
    ticket: OrderTicket
    order_ref: str
    generation: int


def open_order(trade: Trade) -> OpenOrder:
    order = trade.order
    return OpenOrder(
        order_id=int(order.orderId),
        perm_id=int(order.permId or trade.orderStatus.permId),
        client_id=int(order.clientId),
        symbol=trade.contract.symbol,
        action=str(order.action),
        quantity=float(order.totalQuantity),
        order_type=str(order.orderType),
        status=trade.orderStatus.status,
        order_ref=str(order.orderRef or ""),
        filled_quantity=float(trade.orderStatus.filled or 0.0),
    )


def describe_open(order: OpenOrder) -> str:
    return f"{order.order_id} ({order.action} {order.quantity:g} {order.symbol}, client {order.client_id})"


def uncancellable_message(account_id: str, own_id: int, foreign: Sequence[Trade]) -> str:
    described = []
    for order in map(open_order, foreign):
        origin = (
            "entered by hand in TWS" if order.client_id == 0 else f"placed by API client {order.client_id}"
        )
        described.append(
            f"{order.action} {order.quantity:g} {order.symbol} (order {order.order_id}, {origin})"
        )
    return (
        f"account {account_id}: open order(s) this processor cannot cancel: {'; '.join(described)}. IB lets "
        f"only the client that placed an order cancel it, and this account trades as client {own_id}; "
        "cancel them in TWS (or wait until they are done), then the event retries"
    )


def ib_error(trade: Trade) -> str:
    """IB's last word on the order when it was an error or a rejection: "IB error 201: <IB's text>"."""
    errors = [entry for entry in trade.log if entry.errorCode]
    if not errors:
        return ""
    # ib_async logs "Error 201, reqId 7: Order rejected - reason:..."; keep IB's own text.
    text = errors[-1].message.split(": ", 1)[-1]
    return f"IB error {errors[-1].errorCode}: {text}"


def order_result(placed: Placed) -> OrderResult:
    trade = placed.trade
    status = trade.orderStatus
    fills = [fill.execution for fill in trade.fills]
    filled = max(float(status.filled or 0.0), sum(float(e.shares) for e in fills))
    avg = float(status.avgFillPrice or 0.0)
    if not avg and filled:
        avg = sum(float(e.shares) * float(e.price) for e in fills) / filled
    message = ib_error(trade)
    return OrderResult(
        symbol=placed.request.symbol,
        action=placed.request.action,
        quantity=placed.request.quantity,
        order_type=placed.ticket.order_type,
        limit_price=placed.ticket.limit_price,
        time_in_force=placed.ticket.time_in_force,
        outside_rth=placed.ticket.outside_rth,
        order_id=int(trade.order.orderId),
        perm_id=int(trade.order.permId or status.permId or 0),
        order_ref=placed.order_ref,
        status=status.status,
        filled_quantity=filled,
        avg_fill_price=avg,
        message=message,
    )
