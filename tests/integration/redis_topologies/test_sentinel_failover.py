"""A Redis primary dies under load and Sentinel promotes its replica; nothing is lost or run twice.

Real processes throughout: a primary, a replica and three Sentinels (redis-server --sentinel), the
event broker relaying a burst of 500 Ably triggers (125 channels of one account each, four commands
per account, 25 of the accounts trading live: every trigger is an event of its own), and two
processors running them against the loopback TWS, all connected through `redis+sentinel://`. The
primary is SIGKILLed while live rebalances run and half the burst is still to come: a run whose
lease renewal the new primary cannot confirm stops itself before the other processor may take its
event. Afterwards every trigger is an event completed exactly once, the history's orders agree with
the TWS's, no account ran two mutating commands at once (by the history's runs and by the TWS's own
order timeline), and the time with no progress is reported (in the test's properties).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.services import TARGETS, Services, broker_and_processor
from tests.e2e.test_whole_system import at_targets, wait_for
from tests.integration.processor.test_processor_processes import order_intervals_overlap
from tests.support.redis_topologies import ThrowawaySentinels, throwaway_sentinels

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHANNELS = {f"failover-{i:03d}": [f"FO{i:03d}"] for i in range(125)}
ACCOUNTS = [account for followers in CHANNELS.values() for account in followers]
TRADING = ACCOUNTS[:25]  # live rebalances; the others ask for their open orders instead
# cancel-orders first: right after a rebalance it would wait for the positions to show the fills.
COMMANDS = ["cancel-orders", "print-positions", "print-equity"]


def commands_of(account: str) -> list[str]:
    return [COMMANDS[0], "rebalance" if account in TRADING else "print-orders", *COMMANDS[1:]]


TRIGGERS = len(CHANNELS) * (len(COMMANDS) + 1)
KILL_AFTER = TRIGGERS // 2
REBALANCING_AT_KILL = 8


@dataclass
class History:
    database_url: str

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url.replace("+psycopg", "")) as conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]

    def completed(self) -> int:
        return int(self.rows("SELECT count(*) FROM events WHERE status = 'completed'")[0][0])

    def rebalances_started(self) -> int:
        return int(self.rows("SELECT count(*) FROM runs WHERE exec_command = 'rebalance'")[0][0])

    def runs_stopped(self) -> int:
        """Runs that did not end by themselves (their lease unconfirmed when the primary died)."""
        return int(self.rows("SELECT count(*) FROM runs WHERE status IN ('interrupted', 'unknown')")[0][0])

    def completion_times(self) -> list[float]:
        rows = self.rows("SELECT extract(epoch FROM at) FROM event_transitions WHERE state = 'completed'")
        return sorted(float(r[0]) for r in rows)

    def overlapping_mutating_runs(self) -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT a.account_id, a.exec_command, b.exec_command FROM runs a JOIN runs b"
            " ON a.account_id = b.account_id AND a.run_id < b.run_id"
            " AND a.exec_command IN ('rebalance', 'cancel-orders')"
            " AND b.exec_command IN ('rebalance', 'cancel-orders')"
            " AND a.started_at < coalesce(b.finished_at, now())"
            " AND b.started_at < coalesce(a.finished_at, now())"
        )


@contextlib.contextmanager
def under_sentinel(
    folder: Path, database_url: str, channels: dict[str, list[str]], **options: Any
) -> Iterator[tuple[ThrowawaySentinels, Services]]:
    """A primary, a replica and three Sentinels, and the services connected through them."""
    with (
        throwaway_sentinels() as group,
        broker_and_processor(
            folder, redis_url=group.url, prefix="ha", database_url=database_url, channels=channels, **options
        ) as services,
    ):
        yield group, services


def check_history_against_the_gateway(history: History, state: dict[str, Any]) -> int:
    """The history's orders against the TWS's; how many orders the history settled afterwards.

    A run that ended by itself recorded each order as the TWS had it. A run that stopped itself as the
    primary died (its lease unconfirmed) stopped watching its orders, which the TWS may have filled
    later; the next run of the event settled them from the day's executions (an order only its intent
    recorded included). So every order the TWS got is in the history with what the TWS filled of it:
    by its id, or, still without one, as an intent of which the TWS filled nothing."""
    rows = history.rows(
        "SELECT o.event_id, o.broker_order_id, o.symbol, o.action, o.quantity, o.filled_quantity,"
        " r.status, o.message FROM orders o JOIN runs r USING (run_id)"
    )
    by_id = {(str(r[0]), int(r[1])): r for r in rows if r[1] is not None}
    intents = Counter((str(r[0]), str(r[2]), str(r[3]), float(r[4])) for r in rows if r[1] is None)
    assert all(r[5] == 0 for r in rows if r[1] is None), "an order without an id never filled"
    filled_at_gateway: Counter[tuple[str, int]] = Counter()
    for fill in state["fills"]:
        filled_at_gateway[(fill["order_ref"], fill["order_id"])] += fill["shares"]
    received = {(o["order_ref"], o["order_id"]): o for o in state["received_orders"]}
    assert received, "the rebalances traded"
    for key, order in received.items():
        what = (order["order_ref"], order["symbol"], order["action"], float(order["quantity"]))
        if key not in by_id:
            assert intents[what] > 0, f"the TWS received an order the history has no record of: {what}"
            intents[what] -= 1
            assert filled_at_gateway[key] == 0, f"an order the history has as unfilled filled: {what}"
            continue
        _, _, symbol, action, quantity, filled, run, _ = by_id[key]
        assert (symbol, action, float(quantity)) == what[1:], key
        assert filled == filled_at_gateway[key], (key, run, filled, filled_at_gateway[key])
    assert all(by_id[key][5] == 0 for key in by_id.keys() - received.keys()), "filled, never sent"
    assert history.rows("SELECT count(*) FROM runs WHERE status = 'unknown'") == [(0,)], "all settled"
    return sum(1 for r in rows if r[7] and str(r[7]).startswith("settled by a later run"))


def no_progress_seconds(completions: list[float], killed_at: float) -> float:
    """From the kill to the first event completed after it (wall clock, epoch seconds)."""
    after = [t for t in completions if t > killed_at]
    assert after, "nothing completed after the primary was killed"
    return after[0] - killed_at


def publish_burst(group: ThrowawaySentinels, publish: Any, history: History) -> float:
    """Publish half the triggers; once the live rebalances have started (the broker still relaying, the
    processor trading), SIGKILL the primary and publish the other half at once, into the failover.
    The epoch time of the kill."""
    rounds = zip(*(commands_of(account) for [account] in CHANNELS.values()), strict=True)
    triggers = [
        (channel, command) for commands in rounds for channel, command in zip(CHANNELS, commands, strict=True)
    ]
    for channel, command in triggers[:KILL_AFTER]:
        publish(channel, {"exec": command})
    wait_for(lambda: history.rebalances_started() >= REBALANCING_AT_KILL, 120, "the live runs to start")
    killed_at = time.time()
    group.kill(group.primary)
    for channel, command in triggers[KILL_AFTER:]:
        publish(channel, {"exec": command})
    return killed_at


def test_a_primary_killed_mid_burst_loses_no_trigger_and_runs_none_twice(
    fresh_database_url: str, tmp_path: Path, record_property: Any
) -> None:
    history = History(fresh_database_url)
    with under_sentinel(
        tmp_path,
        fresh_database_url,
        CHANNELS,
        fill_delay=0.02,
        processors=2,
        MAX_CONCURRENT_EVENTS="4",  # each; few PostgreSQL connections (the suite shares the server)
        RECONCILE_INTERVAL_SECONDS="2",
    ) as (group, services):
        old_primary = group.primary
        killed_at = publish_burst(group, services.ably.publish, history)
        wait_for(lambda: group.current_primary() != old_primary, 30, "the Sentinels to promote the replica")
        wait_for(lambda: history.completed() >= TRIGGERS, 200, f"{TRIGGERS} events to complete")
        time.sleep(1.0)  # anything that would run twice would show up now
        state = services.tws.state()

    stalled = no_progress_seconds(history.completion_times(), killed_at)
    record_property("no_progress_seconds_after_primary_killed", round(stalled, 2))
    record_property("runs_stopped_by_the_failover", history.runs_stopped())
    print(
        f"no progress for {stalled:.1f} s after the primary was killed; {history.runs_stopped()} runs stopped"
    )

    per_trigger = Counter(
        (str(account), str(command))
        for account, command in history.rows("SELECT account_id, exec_command FROM events")
    )
    assert per_trigger == Counter({(a, c): 1 for a in ACCOUNTS for c in commands_of(a)}), (
        "one event per trigger"
    )
    completions = Counter(
        str(r[0]) for r in history.rows("SELECT event_id FROM event_transitions WHERE state = 'completed'")
    )
    assert len(completions) == TRIGGERS
    assert set(completions.values()) == {1}, "every event completed exactly once"
    assert history.rows("SELECT count(*) FROM events WHERE status <> 'completed'") == [(0,)]

    settled = check_history_against_the_gateway(history, state)
    record_property("orders_of_stopped_runs_settled_later", settled)
    print(f"{settled} orders of stopped runs settled later from the day's executions")
    assert history.rows("SELECT count(DISTINCT worker) FROM runs") == [(2,)], "both processors ran events"
    assert history.overlapping_mutating_runs() == []
    assert order_intervals_overlap(state) == []
    assert all(at_targets(state["accounts"][a], TARGETS) for a in TRADING)


def test_a_trigger_is_not_acknowledged_while_the_replica_lags_and_runs_once_it_catches_up(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """The replica stops answering (SIGSTOP: its connection stays open, so the primary still counts it
    and WAIT times out). The relay's enqueue reaches the primary but is not acknowledged, and the relay
    retries; nothing runs (a claim is not confirmed either). The history may already show the event
    as queued (the outbox is drained from the primary), which is what the reconciliation would restore
    from if the primary died now. Once the replica is back, the trigger is one event, run once."""
    history = History(fresh_database_url)
    account = ACCOUNTS[0]
    with under_sentinel(
        tmp_path, fresh_database_url, {"lagging": [account]}, REDIS_WAIT_TIMEOUT_SECONDS="0.3"
    ) as (group, services):
        group.pause(group.replica)
        try:
            services.ably.publish("lagging", {"exec": "rebalance"})
            not_acknowledged = tmp_path / "broker.log"
            wait_for(lambda: not_acknowledged.read_text().count("NOREPLICAS enqueue") >= 3, 30, "retries")
            assert history.rows("SELECT count(*) FROM runs") == [(0,)], "run on an unconfirmed claim"
            assert services.tws.state()["received_orders"] == []
        finally:
            group.resume(group.replica)
        wait_for(lambda: history.completed() == 1, 60, "the event to complete once the replica is back")
        time.sleep(1.0)  # a second run would show up now
        state = services.tws.state()

    assert history.rows("SELECT account_id, exec_command, status FROM events") == [
        (account, "rebalance", "completed")
    ]
    assert history.rows("SELECT status FROM runs") == [("success",)]
    assert at_targets(state["accounts"][account], TARGETS)
