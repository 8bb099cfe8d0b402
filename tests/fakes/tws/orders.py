"""What the fake gateway does with orders: placeOrder, cancelOrder, reqGlobalCancel and the open order lists.

An `OrderDesk` serves one connection (its client id sees and cancels its own orders; client 0 and the
master client id every client's, `TwsState.find_cancellable`); fills happen in `FakeTws.fill_later`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.fakes.tws import messages as msg
from tests.fakes.tws.account import FakeOrder, ReceivedCancel, ReceivedOrder, TwsState, now

if TYPE_CHECKING:
    from tests.fakes.tws.server import FakeTws
    from tests.fakes.tws.session import Session

# IB's message codes ("TWS API: Message Codes"); the status the order ends in after each rejection.
_FRACTIONAL_TEXT = (
    "Fractional-sized order cannot be placed via API. Please use desktop version to place this order."
)
_REJECTED_STATUS = {201: "Inactive", 10243: "Cancelled"}
NO_DEFINITION = "No security definition has been found for the request"


class OrderDesk:
    """The order handlers of one connection."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def server(self) -> FakeTws:
        return self.session.server

    @property
    def state(self) -> TwsState:
        return self.session.state

    def send_order(self, order: FakeOrder) -> None:
        con_id = self.state.con_id(order.symbol)
        for session in self.server.sessions_for(order.client_id):
            session.send(msg.open_order(order, con_id))
            session.send(msg.order_status(order))

    def open_orders(self, _fields: list[str]) -> None:
        for order in self.state.orders_for(self.session.client_id or 0):
            self.session.send(msg.open_order(order, self.state.con_id(order.symbol)))
            self.session.send(msg.order_status(order))
        self.session.send(msg.open_order_end())

    def all_open_orders(self, _fields: list[str]) -> None:
        for order in self.state.open_orders:
            self.session.send(msg.open_order(order, self.state.con_id(order.symbol)))
            self.session.send(msg.order_status(order))
        self.session.send(msg.open_order_end())

    def _received(self, fields: list[str]) -> ReceivedOrder:
        limit = float(fields[19]) if fields[19] else None
        account = fields[23] or next(iter(self.state.accounts), "")
        return ReceivedOrder(
            client_id=self.session.client_id or 0,
            order_id=int(fields[1]),
            account=account,
            symbol=fields[3],
            action=fields[16],
            quantity=float(fields[17]),
            order_type=fields[18],
            limit_price=limit,
            time_in_force=fields[21],
            outside_rth=fields[33] == "1",
            order_ref=fields[26],
            received_at=now(),
            fields=fields,
            con_id=int(fields[2] or 0),
        )

    def place_order(self, fields: list[str]) -> None:
        received = self._received(fields)
        self.state.received_orders.append(received)
        self.server.changed()
        if self.state.drop_on_order == len(self.state.received_orders):
            self.session.close()
            return
        key = self._order_listing(received)
        if key is None:
            self.session.send(msg.error(received.order_id, 200, NO_DEFINITION))
            return
        rejection = self._rejection(received)
        if rejection is not None:
            self._reject(received, *rejection)
            return
        order = FakeOrder(
            client_id=received.client_id,
            order_id=received.order_id,
            perm_id=self.state.take_perm_id(),
            account=received.account,
            symbol=key,
            action="BUY" if received.action == "BUY" else "SELL",
            quantity=received.quantity,
            order_type=received.order_type,
            limit_price=received.limit_price,
            time_in_force=received.time_in_force,
            outside_rth=received.outside_rth,
            order_ref=received.order_ref,
        )
        self.state.next_order_id = max(self.state.next_order_id, order.order_id + 1)
        self.state.open_orders.append(order)
        if not self.server.may_execute(order):
            # IB holds a market order outside regular hours (and any order outside its session).
            order.status = "PreSubmitted"
            opens = self.server.next_open()
            text = (
                f"Order Message:\n{order.action} {order.quantity:g} {order.symbol} NASDAQ.NMS\nWarning: your "
                f"order will not be placed at the exchange until {opens:%Y-%m-%d %H:%M:%S} US/Eastern"
            )
            self.session.send(msg.error(order.order_id, 399, text))
            self.send_order(order)
            return
        self.send_order(order)
        self.server.spawn(self.server.fill_later(order))

    def _rejection(self, received: ReceivedOrder) -> tuple[int, str] | None:
        reason = self.state.rejections.get(received.symbol)
        if received.account not in self.state.accounts:
            reason = f"account {received.account!r} is not managed by this login"
        if reason is not None:
            return 201, f"Order rejected - reason:{reason}"
        if not self.state.fractional_orders and not float(received.quantity).is_integer():
            return 10243, _FRACTIONAL_TEXT
        return None

    def _reject(self, received: ReceivedOrder, code: int, text: str) -> None:
        """The error, then the order's last status; it never enters the book."""
        self.session.send(msg.error(received.order_id, code, text))
        order = FakeOrder(
            client_id=received.client_id,
            order_id=received.order_id,
            perm_id=self.state.take_perm_id(),
            account=received.account,
            symbol=received.symbol,
            action="BUY" if received.action == "BUY" else "SELL",
            quantity=received.quantity,
            status=_REJECTED_STATUS[code],
        )
        self.state.next_order_id = max(self.state.next_order_id, order.order_id + 1)
        self.session.send(msg.order_status(order))

    def _order_listing(self, received: ReceivedOrder) -> str | None:
        """The listing an order trades: its conId's when it has one, else the symbol's in its currency."""
        if received.con_id:
            return self.state.key_for_con_id(received.con_id)
        fields = received.fields
        return self.state.find_listing(received.symbol, fields[11], fields[9])

    def cancel_order(self, fields: list[str]) -> None:
        order_id = int(fields[2])
        self.state.cancels.append(ReceivedCancel(self.session.client_id or 0, order_id, now()))
        self.server.changed()
        order = self.state.find_cancellable(self.session.client_id or 0, order_id)
        if order is None:
            self.session.send(
                msg.error(order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")
            )
            return
        self._confirm_cancel(order)

    def _confirm_cancel(self, order: FakeOrder) -> None:
        if not self.state.confirm_cancels:
            return
        self.state.open_orders.remove(order)
        order.status = "Cancelled"
        for session in self.server.sessions_for(order.client_id):
            session.send(msg.order_status(order))
        self.server.changed()

    def global_cancel(self, _fields: list[str]) -> None:
        for order in list(self.state.open_orders):
            self.state.cancels.append(ReceivedCancel(self.session.client_id or 0, order.order_id, now()))
            self._confirm_cancel(order)
