"""`python -m management_service` as a process of a test's (or benchmark's) own, on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from rebalancer_shared.config import ENV_VARIABLES
from rebalancer_shared.queue import QueueKeys
from tests.support.servers import ROOT, free_port


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it hangs."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def server_environment(workdir: Path, accounts_yaml: str, port: int, **variables: str) -> dict[str, str]:
    """The caller's environment minus every variable the settings read, plus `variables`."""
    config = workdir / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    accounts = workdir / "accounts.yaml"
    accounts.write_text(accounts_yaml, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARIABLES and k != "CONFIG_FILE"}
    return env | {
        "CONFIG_FILE": str(config),
        "ACCOUNTS_FILE": str(accounts),
        "MANAGEMENT_HOST": "127.0.0.1",
        "MANAGEMENT_PORT": str(port),
        "LOG_FORMAT": "json",
        **variables,
    }


def _wait_until_serving(server: LiveServer, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited: {server.log.read_text()}")
        try:
            if httpx.get(f"{server.base_url}/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start in time: {server.log.read_text()}")


@contextlib.contextmanager
def live_management_server(workdir: Path, accounts_yaml: str, **variables: str) -> Iterator[LiveServer]:
    """Start the service with REDIS_URL, DATABASE_URL, ... from `variables`; stop it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "management_service"],
            cwd=ROOT,
            env=server_environment(workdir, accounts_yaml, port, **variables),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_serving(server, time.monotonic() + 30)
        yield server
    finally:
        server.stop()


def write_heartbeats(redis_url: str, prefix: str, beats: dict[str, dict[str, object]]) -> None:
    """Heartbeats dated now, `{"service:instance": {"state": ..., **details}}`, as the services write them."""
    client = redis.Redis.from_url(redis_url)
    try:
        for name, beat in beats.items():
            client.hset(QueueKeys(prefix).heartbeats, name, json.dumps({**beat, "at": time.time()}))
    finally:
        client.close()
