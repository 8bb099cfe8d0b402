"""The whole system end to end: the three services as processes, the loopback Ably and TWS as
processes, a real allocation server, real Redis and PostgreSQL.

A `{"exec": "rebalance"}` published on a channel ends with the fake TWS holding the targets of every
account on that channel and the management API reporting each event completed with its orders; a
dry run publishes no order; a processor killed with SIGKILL mid-run and started again still ends at
the targets.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from event_processor.planner import Holding, PlanInput, plan_rebalance
from tests.fakes.allocations import AllocationServer
from tests.fakes.tws.account import TwsState
from tests.integration.management.live_server import LiveServer, live_management_server
from tests.integration.processor.processes import (
    TwsProcess,
    processor_env,
    start_processor,
    stop,
    tws_process,
)
from tests.support.servers import REDIS_URL, ROOT

CHANNEL, OTHER = "strategy-e2e", "strategy-other"
ACCOUNTS = {"DUE2E1": CHANNEL, "DUE2E2": CHANNEL, "DUOTHER": OTHER}
PRICES = {"AAA": 50.0, "BBB": 100.0, "CCC": 40.0, "DDD": 25.0}
HOLDINGS = {"AAA": 100.0, "BBB": 10.0, "DDD": 20.0}
FIRST = {"AAA": 0.3, "BBB": 0.3, "CCC": 0.4}
SECOND = {"AAA": 0.5, "DDD": 0.5}
API_KEY = "e2e-management-key"
ACCOUNTS_YAML = "".join(
    f'- account_id: "{a}"\n  notification:\n    channel: "{c}"\n' for a, c in ACCOUNTS.items()
)


@dataclass
class AblyProcess:
    port: int
    control_port: int

    def publish(self, channel: str, data: object) -> None:
        body = json.dumps({"channel": channel, "name": "rebalance", "data": data}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}/publish",
            data=body,
            method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextlib.contextmanager
def ably_process() -> Iterator[AblyProcess]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.ably", "--port", "0", "--control-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        yield AblyProcess(ports["port"], ports["control_port"])
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def at_targets(account: dict[str, Any], targets: dict[str, float]) -> bool:
    holdings = {s: Holding(p["quantity"], p["sec_type"]) for s, p in account["positions"].items()}
    value = account["cash"] + sum(h.quantity * PRICES[s] for s, h in holdings.items())
    return not plan_rebalance(PlanInput(targets, holdings, PRICES, account["cash"], value)).orders


@dataclass
class System:
    tws: TwsProcess
    ably: AblyProcess
    api: AllocationServer
    management: LiveServer
    processor_env: dict[str, str]
    folder: Path
    processor: subprocess.Popen[bytes] | None = None

    def get(self, path: str) -> Any:
        reply = httpx.get(f"{self.management.base_url}{path}", timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def healthy(self) -> bool:
        reply = httpx.get(f"{self.management.base_url}/health", timeout=10)
        return bool(reply.status_code == 200 and reply.json()["healthy"])

    def last_runs(self) -> dict[str, dict[str, Any] | None]:
        return {a["account_id"]: a["last_run"] for a in self.get("/accounts")}

    def start_processor(self, name: str) -> None:
        self.processor = start_processor(self.processor_env, self.folder / f"{name}.log")

    def idle(self) -> bool:
        status = self.get("/queue/status")
        return bool(status["active_events_count"] == 0)


def tws_state() -> TwsState:
    state = TwsState()
    for account in ACCOUNTS:
        state.add_account(account, 5_000.0, HOLDINGS)
    for symbol, price in PRICES.items():
        state.set_price(symbol, price)
    state.fill_delay_seconds = 0.05
    return state


@pytest.fixture
def system(prefix: str, fresh_database_url: str, tmp_path: Path) -> Iterator[System]:
    accounts_file = tmp_path / "accounts.yaml"
    accounts_file.write_text(ACCOUNTS_YAML)
    common = {"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": prefix, "DATABASE_URL": fresh_database_url}
    with AllocationServer() as api, tws_process(tws_state(), tmp_path) as tws, ably_process() as ably:
        api.set_weights(CHANNEL, FIRST)
        api.set_weights(OTHER, FIRST)
        broker_env = processor_env(prefix, fresh_database_url, accounts_file, api.base_url, tws.port)
        broker_env.update(
            {"ABLY_API_KEY": "app.key:secret", "ABLY_ENDPOINT": f"127.0.0.1:{ably.port}", "ABLY_TLS": "false"}
        )
        with (tmp_path / "broker.log").open("ab") as log:
            broker = subprocess.Popen(
                [sys.executable, "-m", "event_broker"], env=broker_env, cwd=ROOT, stdout=log, stderr=log
            )
        env = processor_env(
            prefix, fresh_database_url, accounts_file, api.base_url, tws.port, IB_CLIENT_ID="31"
        )
        with live_management_server(
            tmp_path / "management",
            ACCOUNTS_YAML,
            MANAGEMENT_API_KEY=API_KEY,
            HEARTBEAT_SECONDS="0.5",
            **common,
        ) as management:
            found = System(tws, ably, api, management, env, tmp_path)
            found.start_processor("processor-1")
            try:
                wait_for(found.healthy, 60, "the three services to report healthy")
                yield found
            finally:
                if found.processor is not None:
                    stop(found.processor)
                assert stop(broker) == 0


def test_published_rebalance_reaches_every_accounts_targets_and_the_api_reports_it(system: System) -> None:
    system.ably.publish(CHANNEL, {})
    wait_for(lambda: all(system.last_runs()[a] for a in ("DUE2E1", "DUE2E2")), 60, "the dry runs")
    wait_for(system.idle, 60, "the dry runs to finish")
    runs = system.last_runs()
    assert {runs[a]["exec_command"] for a in ("DUE2E1", "DUE2E2")} == {"print-rebalance"}  # type: ignore[index]
    assert system.tws.state()["received_orders"] == [], "a dry run publishes no order"
    assert runs["DUOTHER"] is None, "an account on another channel is not touched"

    system.ably.publish(CHANNEL, {"exec": "rebalance"})
    wait_for(
        lambda: all(
            (r or {}).get("exec_command") == "rebalance"
            for a, r in system.last_runs().items()
            if a != "DUOTHER"
        ),
        60,
        "the live runs to start",
    )
    wait_for(system.idle, 90, "the live runs to finish")
    state = system.tws.state()
    for account in ("DUE2E1", "DUE2E2"):
        assert at_targets(state["accounts"][account], FIRST), account
        run = system.last_runs()[account]
        assert run is not None
        history = system.get(f"/events/{run['event_id']}")
        assert history["event"]["status"] == "completed"
        assert "completed" in [t["state"] for t in history["transitions"]]
        orders = [order for r in history["runs"] for order in r["orders"]]
        assert orders, "the event's orders are reported"
        assert {o["order_ref"] for o in orders} == {run["event_id"]}
        assert all(o["status"] == "Filled" for o in orders)
    assert state["accounts"]["DUOTHER"]["positions"].keys() == {"AAA", "BBB", "DDD"}
    assert system.healthy()


def test_processor_killed_mid_rebalance_and_restarted_still_reaches_the_targets(system: System) -> None:
    system.tws.update(fill_delay_seconds=1.5)
    system.api.set_weights(CHANNEL, SECOND)
    system.ably.publish(CHANNEL, {"exec": "rebalance"})
    wait_for(lambda: bool(system.tws.state()["received_orders"]), 60, "the first order")
    assert system.processor is not None
    system.processor.send_signal(signal.SIGKILL)
    system.processor.wait(timeout=10)
    system.start_processor("processor-2")
    wait_for(system.idle, 120, "the restarted processor to finish")
    state = system.tws.state()
    for account in ("DUE2E1", "DUE2E2"):
        assert at_targets(state["accounts"][account], SECOND), account
    assert system.get("/queue/status")["events_with_retries"] == 0
