"""Real processes for processor tests: the loopback TWS and `python -m event_processor`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.tws.account import TwsState
from tests.support.servers import REDIS_URL, ROOT


@dataclass
class TwsProcess:
    port: int
    control_port: int
    process: subprocess.Popen[bytes]

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/state", timeout=10) as reply:
            data: dict[str, Any] = json.loads(reply.read())
            return data

    def served(self) -> list[dict[str, Any]]:
        """Every request message the fake answered, with its arrival and answer times."""
        url = f"http://127.0.0.1:{self.control_port}/served"
        with urllib.request.urlopen(url, timeout=10) as reply:
            data: list[dict[str, Any]] = json.loads(reply.read())["served"]
            return data

    def update(self, **fields: Any) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}/state",
            data=json.dumps(fields).encode(),
            method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextlib.contextmanager
def tws_process(state: TwsState, folder: Path) -> Iterator[TwsProcess]:
    """The fake TWS as a process of its own, starting from `state`."""
    state_file = folder / "tws-state.json"
    state_file.write_text(json.dumps(state.to_json()))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.tws",
            "--port",
            "0",
            "--state",
            str(state_file),
            "--control-port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        yield TwsProcess(ports["port"], ports["control_port"], process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def processor_env(
    prefix: str, database_url: str, accounts_file: Path, allocations_url: str, tws_port: int, **extra: str
) -> dict[str, str]:
    """The environment of a processor process pointed at the test's servers."""
    env = {
        **os.environ,
        "CONFIG_FILE": str(ROOT / "config.yaml"),
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "DATABASE_URL": database_url,
        "ACCOUNTS_FILE": str(accounts_file),
        "ALLOCATIONS_BASE_URL": allocations_url,
        "IB_HOST": "127.0.0.1",
        "IB_PORT": str(tws_port),
        "LEASE_SECONDS": "3",
        "HEARTBEAT_SECONDS": "0.5",
        "RETRY_DELAY_SECONDS": "0.5",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        # Trading hours are the loopback gateway's (its clock); the tests of our calendar set it.
        "MARKET_CALENDAR": "always_open",
    }
    env.update(extra)
    return env


def start_processor(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """`python -m event_processor` with its log in `log_file`."""
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "event_processor"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout=wait)


def write_accounts(folder: Path, channel: str, account_ids: list[str]) -> Path:
    return write_channels(folder, {channel: account_ids})


def write_channels(folder: Path, accounts_by_channel: dict[str, list[str]]) -> Path:
    """accounts.yaml with each channel's accounts following it."""
    path = folder / "accounts.yaml"
    path.write_text(
        "".join(
            f'- account_id: "{a}"\n  notification:\n    channel: "{channel}"\n'
            for channel, account_ids in accounts_by_channel.items()
            for a in account_ids
        )
    )
    return path
