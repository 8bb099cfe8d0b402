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
    filled: float = 0.0,
    price: float | None = None,
    message: str | None = None,
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
        filled_quantity=filled,
        avg_fill_price=price,
        created_at=at,
        updated_at=at,
        message=message,
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


def test_intents_an_order_could_both_be_are_left_alone_and_one_it_can_only_be_takes_it() -> None:
    other = uuid.uuid4()
    rows = [
        row(0, "AAA", "BUY", 10, status="intent"),
        row(0, "AAA", "BUY", 12, status="intent", run_id=other),
    ]
    # One order of 12 filled: only the intent of 12 can be it; the intent of 10 was never filled.
    found = settle(rows, [fill(9401, "AAA", "BUY", 12, 7.0)], str(EVENT), CURRENT, TODAY)
    assert {(s.run_id, s.record.status, s.record.filled_quantity) for s in found} == {
        (other, "Filled", 12),
        (EARLIER, "Cancelled", 0),
    }
    # 5 shares filled of one order: it could be either intent; neither is settled.
    assert settle(rows, [fill(9402, "AAA", "BUY", 5, 7.0)], str(EVENT), CURRENT, TODAY) == []


def test_what_a_row_recorded_is_never_lowered_and_its_message_is_kept() -> None:
    rows = [row(0, "AAA", "SELL", 100, perm_id=9501, filled=50, price=20.0, message="IB warning 399")]
    [settled] = settle(rows, [], str(EVENT), CURRENT, TODAY)  # its executions not seen
    assert (settled.record.status, settled.record.filled_quantity, settled.record.avg_fill_price) == (
        "Cancelled",
        50,
        20.0,
    )
    assert settled.record.message is not None
    assert settled.record.message.startswith("IB warning 399; settled by a later run")


def test_an_old_rows_order_id_does_not_hide_todays_order_from_an_intent() -> None:
    yesterday = TODAY - timedelta(hours=20)
    rows = [
        row(0, "AAA", "BUY", 2, status="Filled", order_id=8601, at=yesterday),
        row(1, "AAA", "BUY", 2, status="intent"),
    ]
    # Today's order 9601 has order id 8601 again (IB's order ids are per client id, and may restart).
    assert outcome(rows, [fill(9601, "AAA", "BUY", 2, 3.0)]) == {1: ("Filled", 2, 3.0, 9601)}
