"""The engine's view of what it may trade (execution/holdings.py): identity, duplicates, fills, cash."""

from __future__ import annotations

import pytest

from event_processor.brokers import AccountValues, BrokerPosition, Listing, OrderResult
from event_processor.execution.holdings import (
    UnsupportedAccountError,
    buys_within,
    expected_after,
    holdings_of,
    listing_candidates,
    require_trading_currency,
    shows,
    traded_symbols,
    unique_positions,
    with_quantities,
)
from event_processor.planner import Holding, PlannedOrder

US_SHEL = Listing("SHEL", 501, "NYSE")
LISTINGS = {"SHEL": US_SHEL, "AAA": Listing("AAA", 100, "NASDAQ")}


def stock(
    symbol: str, quantity: float, con_id: int, exchange: str = "NASDAQ", currency: str = "USD"
) -> BrokerPosition:
    return BrokerPosition(symbol, quantity, con_id=con_id, exchange=exchange, currency=currency)


def filled(symbol: str, action: str, quantity: float, price: float) -> OrderResult:
    return OrderResult(
        symbol=symbol,
        action="BUY" if action == "BUY" else "SELL",
        quantity=quantity,
        order_type="MKT",
        limit_price=None,
        time_in_force="DAY",
        outside_rth=False,
        order_id=1,
        perm_id=1,
        order_ref="e",
        status="Filled",
        filled_quantity=quantity,
        avg_fill_price=price,
    )


def test_a_repeated_conid_collapses_to_its_last_row_and_is_never_summed() -> None:
    rows = [stock("AAA", 100, 100), stock("AAA", 100, 100), stock("AAA", 90, 100)]

    assert unique_positions(rows) == (stock("AAA", 90, 100),)
    assert holdings_of(rows, LISTINGS)["AAA"].quantity == 90


def test_the_us_listing_is_keyed_by_symbol_and_a_foreign_one_of_the_same_ticker_apart() -> None:
    positions = [
        stock("SHEL", 10, 501, "NYSE"),
        stock("SHEL", 100, 502, "LSE", "GBP"),
        stock("SHEL", 5, 503, "AEB"),  # a USD line elsewhere: not the conId SMART/USD routes to
    ]

    holdings = holdings_of(positions, LISTINGS)

    assert holdings == {
        "SHEL": Holding(10, exchange="NYSE", con_id=501),
        "SHEL (LSE GBP, conId 502)": Holding(
            100, currency="GBP", us_listing=False, exchange="LSE", con_id=502
        ),
        "SHEL (AEB USD, conId 503)": Holding(5, us_listing=False, exchange="AEB", con_id=503),
    }
    assert traded_symbols({"BBB": 1.0}, holdings) == ["BBB", "SHEL"]
    assert listing_candidates(positions) == ["SHEL"]


def test_a_stock_whose_symbol_has_no_us_listing_is_not_traded() -> None:
    holdings = holdings_of([stock("ZZZ", 3, 900, "")], LISTINGS)

    assert holdings == {"ZZZ (unknown exchange USD, conId 900)": Holding(3, us_listing=False, con_id=900)}


def test_options_keep_a_key_of_their_own() -> None:
    option = BrokerPosition("AAA", 2, sec_type="OPT", local_symbol="AAA 250117C00050000", con_id=7)

    assert set(holdings_of([option, stock("AAA", 1, 100)], LISTINGS)) == {"AAA 250117C00050000 (OPT)", "AAA"}


@pytest.mark.parametrize("currency", ["CAD", "EUR", "GBP", "BASE"])
def test_an_account_not_in_usd_is_refused_with_one_clear_message(currency: str) -> None:
    with pytest.raises(UnsupportedAccountError) as refused:
        require_trading_currency(AccountValues("U9", 1_000.0, 10.0, currency))

    assert str(refused.value) == (
        f"account U9: base currency {currency}: not supported yet; only USD accounts are traded"
    )


def test_a_usd_account_passes() -> None:
    require_trading_currency(AccountValues("U9", 1_000.0, 10.0, "USD"))


def test_expected_holdings_follow_the_fills_and_lagging_positions_do_not_show_them() -> None:
    before = {"AAA": Holding(100), "DDD": Holding(20)}
    orders = [filled("AAA", "SELL", 31, 50), filled("DDD", "SELL", 20, 25), filled("CCC", "BUY", 5, 40)]

    expected = expected_after(before, orders)

    assert expected == {"AAA": 69, "DDD": 0, "CCC": 5}
    assert not shows(before, expected)
    assert shows({"AAA": Holding(69), "CCC": Holding(5)}, expected)
    assert with_quantities(before, before, expected) == {"AAA": Holding(69), "CCC": Holding(5)}


def test_buys_are_cut_to_the_budget_in_whole_units_in_order() -> None:
    buys = [
        PlannedOrder("BBB", "BUY", 10, 100.0, 1_000.0, "under target"),
        PlannedOrder("CCC", "BUY", 10, 40.0, 400.0, "under target"),
    ]

    assert buys_within(buys, 10_000.0, 1.0) == buys
    cut = buys_within(buys, 1_150.0, 1.0)
    assert [(o.symbol, o.quantity, o.est_value) for o in cut] == [("BBB", 10, 1_000.0), ("CCC", 3, 120.0)]
    assert buys_within(buys, -5.0, 1.0) == []
