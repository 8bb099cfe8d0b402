"""Settling an earlier run's open orders from the day's executions (pure): by the order's id when
the row has it, by symbol and side for an intent the history never saw sent, nothing filled for an
intent no execution matches; only the event's own executions, only rows of the day, never the
current run's rows, and never an order another row holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from event_processor.brokers.models import Action, BrokerExecution
from event_processor.order_settlement import settle, unsettled
from rebalancer_shared.store import OrderView

EVENT = uuid.uuid4()
EARLIER, CURRENT = uuid.uuid4(), uuid.uuid4()
TODAY = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)  # midnight in New York
NOON = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


def row(
    seq: int,
    symbol: str,
    action: str,
    quantity: float,
    status: str = "Submitted",
    perm_id: int | None = None,
    run_id: uuid.UUID = EARLIER,
    at: datetime = NOON,
    order_id: int | None = None,
) -> OrderView:
    return OrderView(
        run_id=run_id,
        event_id=EVENT,
        seq=seq,
        symbol=symbol,
        action=action,
        quantity=quantity,
        order_type="MKT",
        limit_price=None,
        broker_order_id=order_id or (perm_id and perm_id - 1000),
        perm_id=perm_id,
        order_ref=str(EVENT),
        status=status,
        filled_quantity=0.0,
        avg_fill_price=None,
        created_at=at,
        updated_at=at,
    )


def fill(
    perm_id: int, symbol: str, side: Action, shares: float, price: float, ref: str = str(EVENT)
) -> BrokerExecution:
    at = NOON + timedelta(seconds=perm_id % 100)
    return BrokerExecution(
        symbol, 1, side, shares, price, at, perm_id=perm_id, order_ref=ref, order_id=perm_id - 1000
    )


def outcome(
    rows: list[OrderView], executions: list[BrokerExecution]
) -> dict[int | None, tuple[str, float, float | None, int | None]]:
    found = settle(rows, executions, str(EVENT), CURRENT, TODAY)
    assert all(s.run_id == EARLIER for s in found)
    return {
        s.record.seq: (s.record.status, s.record.filled_quantity, s.record.avg_fill_price, s.record.perm_id)
        for s in found
    }


def test_a_sent_order_takes_its_own_executions_filled_in_part_it_was_cancelled() -> None:
    rows = [row(0, "AAA", "SELL", 10, perm_id=9001), row(1, "BBB", "BUY", 20, perm_id=9002)]
    executions = [
        fill(9001, "AAA", "SELL", 4, 100.0),
        fill(9001, "AAA", "SELL", 6, 101.0),
        fill(9002, "BBB", "BUY", 5, 50.0),
    ]
    assert outcome(rows, executions) == {
        0: ("Filled", 10, 100.6, 9001),
        1: ("Cancelled", 5, 50.0, 9002),
    }


def test_an_intent_takes_the_order_the_history_never_heard_of_by_symbol_and_side() -> None:
    rows = [
        row(0, "AAA", "SELL", 10, perm_id=9001, status="Filled"),  # settled: its executions stay its own
        row(1, "BBB", "BUY", 20, status="intent"),
        row(2, "CCC", "BUY", 5, status="intent"),
        row(3, "DDD", "BUY", 7, status="intent"),
    ]
    executions = [
        fill(9001, "AAA", "SELL", 10, 100.0),
        fill(9005, "BBB", "BUY", 20, 50.0),
        fill(9006, "DDD", "SELL", 7, 10.0),  # the other side: not this intent's order
        fill(9007, "CCC", "BUY", 5, 30.0, ref="another-event"),  # not this event's
    ]
    assert outcome(rows, executions) == {
        1: ("Filled", 20, 50.0, 9005),
        2: ("Cancelled", 0, None, None),  # never sent, or cancelled before it filled
        3: ("Cancelled", 0, None, None),
    }


def test_two_intents_of_one_symbol_take_the_strangers_in_time_order() -> None:
    rows = [
        row(0, "AAA", "BUY", 3, status="intent"),
        row(1, "AAA", "BUY", 4, status="intent", at=NOON + timedelta(seconds=1)),
    ]
    executions = [fill(9102, "AAA", "BUY", 4, 11.0), fill(9101, "AAA", "BUY", 3, 10.0)]  # 9101 executed first
    assert outcome(rows, executions) == {0: ("Filled", 3, 10.0, 9101), 1: ("Filled", 4, 11.0, 9102)}


def test_the_current_runs_rows_settled_rows_and_rows_of_an_earlier_day_are_left_alone() -> None:
    rows = [
        row(0, "AAA", "BUY", 3, perm_id=9201, run_id=CURRENT),
        row(1, "BBB", "BUY", 3, perm_id=9202, status="Cancelled"),
        row(2, "CCC", "BUY", 3, perm_id=9203, at=TODAY - timedelta(minutes=1)),  # yesterday, New York
    ]
    assert unsettled(rows, CURRENT, TODAY) == []
    assert outcome(rows, [fill(9201, "AAA", "BUY", 3, 1.0)]) == {}


def test_a_row_sent_before_ib_gave_its_perm_id_is_found_by_its_order_id() -> None:
    rows = [row(0, "AAA", "SELL", 10, order_id=8301), row(1, "BBB", "BUY", 2, status="intent")]
    executions = [fill(9301, "AAA", "SELL", 10, 12.0), fill(9302, "BBB", "BUY", 2, 5.0)]
    # 9301 is the AAA row's (order id 8301): it is not a stranger for the BBB intent to take either.
    assert outcome(rows, executions) == {0: ("Filled", 10, 12.0, 9301), 1: ("Filled", 2, 5.0, 9302)}
