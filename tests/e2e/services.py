"""The event broker and a processor as processes, with the loopback Ably, the loopback TWS and an
allocation server, pointed at a Redis and a PostgreSQL database of the test's choosing."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.test_whole_system import PRICES, AblyProcess, ably_process
from tests.fakes.allocations import AllocationServer
from tests.fakes.tws.account import TwsState
from tests.integration.processor.processes import (
    TwsProcess,
    processor_env,
    start_processor,
    stop,
    tws_process,
    write_channels,
)
from tests.support.servers import ROOT

HOLDINGS = {"AAA": 100.0, "BBB": 10.0, "DDD": 20.0}
TARGETS = {"AAA": 0.3, "BBB": 0.3, "CCC": 0.4}


@dataclass
class Services:
    tws: TwsProcess
    ably: AblyProcess
    api: AllocationServer


def tws_state(accounts: list[str], fill_delay: float) -> TwsState:
    state = TwsState()
    for account in accounts:
        state.add_account(account, 5_000.0, HOLDINGS)
    for symbol, price in PRICES.items():
        state.set_price(symbol, price)
    state.fill_delay_seconds = fill_delay
    return state


@contextlib.contextmanager
def broker_and_processor(
    folder: Path,
    *,
    redis_url: str,
    prefix: str,
    database_url: str,
    channel: str = "",
    accounts: list[str] | None = None,
    fill_delay: float = 0.2,
    channels: dict[str, list[str]] | None = None,
    processors: int = 1,
    **variables: str,
) -> Iterator[Services]:
    """Start everything; on exit stop the two services with SIGTERM and require a clean exit.

    The accounts follow `channel`, or, with `channels`, each channel its own accounts; every channel's
    strategy has the weights TARGETS. With `processors` > 1, that many processors share the queue (each
    with its own client id for reads; processor.log, processor-2.log, ...)."""
    channels = channels or {channel: accounts or []}
    all_accounts = [account for followers in channels.values() for account in followers]
    accounts_file = write_channels(folder, channels)
    with (
        AllocationServer() as api,
        tws_process(tws_state(all_accounts, fill_delay), folder) as tws,
        ably_process() as ably,
    ):
        for name in channels:
            api.set_weights(name, TARGETS)
        env = processor_env(prefix, database_url, accounts_file, api.base_url, tws.port, IB_CLIENT_ID="41")
        env |= {"REDIS_URL": redis_url, "LEASE_SECONDS": "2", "HEARTBEAT_SECONDS": "0.4", **variables}
        broker_env = env | {
            "ABLY_API_KEY": "app.key:secret",
            "ABLY_ENDPOINT": f"127.0.0.1:{ably.port}",
            "ABLY_TLS": "false",
        }
        with (folder / "broker.log").open("ab") as log:
            broker = subprocess.Popen(
                [sys.executable, "-m", "event_broker"], env=broker_env, cwd=ROOT, stdout=log, stderr=log
            )
        running = [
            start_processor(
                env | {"IB_CLIENT_ID": str(41 + index)},
                folder / ("processor.log" if index == 0 else f"processor-{index + 1}.log"),
            )
            for index in range(processors)
        ]
        try:
            yield Services(tws, ably, api)
        finally:
            codes = [stop(process) for process in [*running, broker]]
        assert codes == [0] * (processors + 1), f"the services did not stop cleanly: {codes}"
