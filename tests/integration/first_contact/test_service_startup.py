"""Services start honestly: they wait for Redis and PostgreSQL with a countdown and then exit 3 with one
line, exit 2 on a bad accounts file, create and migrate a brand-new database before serving, warn when
no API key is set, and read `.env` from their working folder (the environment still wins)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.first_contact.helpers import plain_lines
from tests.support.servers import database_url, drop_database, free_port

SERVICES = {
    "event-processor": "event_processor",
    "event-broker": "event_broker",
    "management-service": "management_service",
}


def run_service(
    name: str, folder: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", SERVICES[name]],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(deployment_env: dict[str, str]) -> dict[str, str]:
    # Every service is started here: the broker needs a key, and nobody should wait a minute.
    return deployment_env | {"ABLY_API_KEY": "app.key:secret", "STARTUP_WAIT_SECONDS": "2"}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_an_unreachable_postgresql_is_waited_for_then_named_in_one_line(
    service: str, folder: Path, env: dict[str, str]
) -> None:
    port = free_port()
    result = run_service(service, folder, env | {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x"})
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert plain_lines(result.stderr) == [
        f"{service}: PostgreSQL at postgresql://postgres@127.0.0.1:{port}/x does not answer: "
        "Connection refused (start it, or set DATABASE_URL to a server that runs)"
    ]
    # The countdown from STARTUP_WAIT_SECONDS=2: a loaded machine may spend a second starting up.
    assert re.search(r"giving up in [12] s", result.stderr), result.stderr
    assert " started" not in result.stderr
    assert "ready" not in result.stderr


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_an_unreachable_redis_is_named_in_one_line(service: str, folder: Path, env: dict[str, str]) -> None:
    port = free_port()
    result = run_service(
        service, folder, env | {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "STARTUP_WAIT_SECONDS": "0"}
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    [line] = plain_lines(result.stderr)
    assert line.startswith(f"{service}: Redis at redis://127.0.0.1:{port}/0 does not answer")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_bad_accounts_file_stops_the_service_with_one_line(
    service: str, folder: Path, env: dict[str, str]
) -> None:
    (folder / "accounts.yaml").write_text('- account_id: "DU123456"\n  notification:\n    chanel: "x"\n')
    result = run_service(service, folder, env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = plain_lines(result.stderr)
    assert line.startswith(f"{service}: invalid accounts file: ")
    assert "account 'DU123456': key 'notification.chanel': unknown key" in line


def test_the_processor_does_not_start_with_an_account_trading_fractional_shares_through_ibkr(
    folder: Path, env: dict[str, str]
) -> None:
    (folder / "accounts.yaml").write_text(
        '- account_id: "DU123456"\n  notification:\n    channel: "x"\n  rebalancing:\n'
        "    fractional_shares: true\n"
    )
    result = run_service("event-processor", folder, env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = plain_lines(result.stderr)
    assert line.startswith(
        f"event-processor: invalid accounts file: {folder / 'accounts.yaml'}: account 'DU123456': "
        "key 'rebalancing.fractional_shares': true, but processing.broker is 'ibkr'"
    )
    assert "error 10243" in line
    assert " started" not in result.stderr


def test_fractional_shares_by_default_with_ibkr_stop_a_service_at_configuration_load(
    folder: Path, env: dict[str, str]
) -> None:
    (folder / "config.yaml").write_text("rebalancing_defaults:\n  fractional_shares: true\n")
    result = run_service("event-processor", folder, env)
    assert result.returncode == 2, result.stderr
    [line] = plain_lines(result.stderr)
    assert line.startswith(
        f"event-processor: invalid configuration: {folder / 'config.yaml'}: key 'rebalancing_defaults': "
        "fractional_shares is true, but processing.broker is 'ibkr'"
    )


class Management:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "management.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "management_service"],
                cwd=folder,
                env=env | {"MANAGEMENT_PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_serving(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                httpx.get(f"{self.base_url}/openapi.json", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"not serving: {self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture
def new_database() -> Iterator[str]:
    name = f"rebalancer_test_{uuid.uuid4().hex[:12]}"
    yield database_url(name)
    drop_database(name)


def test_the_management_service_creates_a_new_database_warns_without_a_key_and_serves(
    folder: Path, env: dict[str, str], new_database: str
) -> None:
    server = Management(folder, env | {"DATABASE_URL": new_database})
    try:
        server.wait_serving()
        unknown = httpx.get(f"{server.base_url}/events/{uuid.uuid4()}")
        refused = httpx.post(
            f"{server.base_url}/queue/events",
            json={"account_id": "DU123456", "exec_command": "print-positions", "data": {}},
            headers={"Authorization": "Bearer anything"},
        )
    finally:
        server.stop()
    log = server.log.read_text()
    assert unknown.status_code == 404  # the history answered: its tables exist
    assert refused.status_code == 503
    assert "created the database (it did not exist)" in log
    assert "MANAGEMENT_API_KEY is not set: POST and DELETE answer 503" in log


def test_a_service_reads_dotenv_from_its_folder_and_the_environment_wins(
    folder: Path, env: dict[str, str]
) -> None:
    (folder / ".env").write_text("MANAGEMENT_API_KEY=key-from-dotenv\nREDIS_KEY_PREFIX=not-this-one\n")
    server = Management(folder, env)
    try:
        server.wait_serving()
        answer = httpx.post(
            f"{server.base_url}/queue/events",
            json={"account_id": "DU123456", "exec_command": "print-positions", "data": {}},
            headers={"Authorization": "Bearer key-from-dotenv"},
        )
        status = httpx.get(f"{server.base_url}/queue/status").json()
    finally:
        server.stop()
    assert answer.status_code == 201, answer.text
    assert status["queue_length"] == 1  # under the prefix of the environment, which the test cleans up
    assert "key-from-dotenv" not in server.log.read_text()
