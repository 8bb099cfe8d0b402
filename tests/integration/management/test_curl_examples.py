"""The curl examples of the README and of management-service/API.md, run with the real curl.

API.md's run against a live `python -m management_service`: each ```bash block in order (with
`$MANAGEMENT_API_KEY` and `$EVENT_ID` set, and the address pointed at the server); the status named
under it must be the one answered, and the response must have the shape of the ```json block that
follows it (same keys, same list lengths) or, for the Prometheus ```text block, the same metric
families.

The README's run as a user runs them: `rebalancer demo` is started as a process, the
`export MANAGEMENT_API_KEY=...` line it prints is pasted into one bash session, then every block in
order, as printed but for the port (so the block that sets `EVENT_ID` serves the later ones). The
status and the shape of each block's last answer are checked as for API.md, but a list's length may
differ (it depends on timing: its items are compared with the example's), and the values that say
what happened (account, command, outcome, state, errors) must be the ones printed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.management.demo_session import demo_process, shell_session
from tests.integration.management.helpers import API_KEY
from tests.integration.management.live_server import LiveServer, live_management_server, write_heartbeats
from tests.support.servers import REDIS_URL, ROOT

API_MD = ROOT / "management-service" / "API.md"
DOC_ADDRESS = "http://localhost:8000"
ACCOUNTS_YAML = """
- account_id: "DU123456"
  notification:
    channel: "strategy-name-100"
  rebalancing:
    equity_reserve_percentage: 1.0
- account_id: "DU789012"
  notification:
    channel: "strategy-name-200"
  rebalancing:
    equity_reserve_percentage: 2.5
"""
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
HEARTBEATS: dict[str, dict[str, object]] = {
    "event-broker:broker-1": {"state": "connected", "channels": 2},
    "event-processor:worker-1": {"state": "running", "active": 0, "slots": 8},
}
STATUS = re.compile(r"`(\d{3}) [A-Za-z ]+`")


@dataclass(frozen=True)
class Example:
    command: str
    status: int
    language: str
    response: str


def readme_section() -> str:
    """The README's management examples, between its curl-examples markers."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("<!-- curl-examples", 1)[1].split("<!-- /curl-examples -->", 1)[0]


def read_examples(text: str | None = None) -> list[Example]:
    """Every ```bash block with the status under it and the response block that follows."""
    text = API_MD.read_text(encoding="utf-8") if text is None else text
    blocks = list(FENCE.finditer(text))
    examples = []
    for block, following in itertools.pairwise(blocks):
        if block.group(1) != "bash":
            continue
        status = STATUS.search(text[block.end() : following.start()])
        assert status is not None, f"no status line after: {block.group(2)}"
        assert following.group(1) in ("json", "text"), f"no response block after: {block.group(2)}"
        examples.append(Example(block.group(2), int(status.group(1)), following.group(1), following.group(2)))
    return examples


@pytest.fixture
def live_server(tmp_path: Path, prefix: str, fresh_database_url: str) -> Iterator[LiveServer]:
    with live_management_server(
        tmp_path / "server",
        ACCOUNTS_YAML,
        REDIS_URL=REDIS_URL,
        REDIS_KEY_PREFIX=prefix,
        DATABASE_URL=fresh_database_url,
        MANAGEMENT_API_KEY=API_KEY,
        LOG_LEVEL="DEBUG",
    ) as server:
        yield server


@dataclass(frozen=True)
class Likeness:
    """How closely an answer must follow its example: list lengths, and the keys whose values must match."""

    same_lengths: bool = True
    same_values: frozenset[str] = frozenset()


EXACT = Likeness()
# The README's run: lengths depend on timing; these values are what the examples are about.
AS_PRINTED = Likeness(
    same_lengths=False,
    same_values=frozenset(
        {"account_id", "exec_command", "outcome", "message", "source", "state", "status", "times_queued"}
        | {"detail", "last_error", "error", "attempt", "execution_mode", "worker", "orders"}
    ),
)


def assert_same_shape(example: Any, actual: Any, where: str = "$", like: Likeness = EXACT) -> None:
    """Same keys in every object and same list lengths; scalars may differ (and be null)."""
    if isinstance(example, dict):
        _assert_same_object(example, actual, where, like)
    elif isinstance(example, list):
        _assert_same_list(example, actual, where, like)
    elif example is not None and actual is not None:
        assert isinstance(actual, str) == isinstance(example, str), f"{where}: {actual!r} vs {example!r}"


def _assert_same_object(example: dict[str, Any], actual: Any, where: str, like: Likeness) -> None:
    assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
    assert sorted(actual) == sorted(example), f"{where}: keys {sorted(actual)} != {sorted(example)}"
    for key, value in example.items():
        if key in like.same_values:
            assert actual[key] == value, f"{where}.{key}: {actual[key]!r}, the example says {value!r}"
        assert_same_shape(value, actual[key], f"{where}.{key}", like)


def _assert_same_list(example: list[Any], actual: Any, where: str, like: Likeness) -> None:
    assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
    if like.same_lengths or not example:
        assert len(actual) == len(example), f"{where}: {len(actual)} items, the example has {len(example)}"
    else:
        assert actual, f"{where}: no items, the example has {len(example)}"
    for index, got in enumerate(actual):
        assert_same_shape(example[min(index, len(example) - 1)], got, f"{where}[{index}]", like)


def _metric_families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def run_example(example: Example, server: LiveServer, env: dict[str, str], out: Path) -> tuple[int, str]:
    """Run the example's curl (as written, pointed at the server); return status and body."""
    command = example.command.replace(DOC_ADDRESS, server.base_url)
    assert command.startswith("curl "), command
    command = f"curl -sS -o {out} -w '%{{http_code}}' " + command.removeprefix("curl ")
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return int(done.stdout), out.read_text(encoding="utf-8")


def test_the_documented_examples_hold_and_the_key_stays_out_of_the_logs(
    live_server: LiveServer, prefix: str, tmp_path: Path
) -> None:
    examples = read_examples()
    assert len(examples) >= 12
    run_in_order(examples, live_server, prefix, tmp_path)
    _assert_the_key_stays_out_of_the_logs(live_server)


def test_the_readme_examples_run_as_printed_against_the_demo(tmp_path: Path) -> None:
    examples = read_examples(readme_section())
    assert len(examples) >= 8
    env = {k: v for k, v in os.environ.items() if k not in ("MANAGEMENT_API_KEY", "EVENT_ID")}
    with demo_process(tmp_path / "demo") as demo, shell_session(tmp_path / "shell", env) as shell:
        assert shell.run(demo.export_line()).exit_code == 0
        answers = []
        for example in examples:
            demo.wait_until_idle()
            done = shell.run(example.command.replace("localhost:8000", f"localhost:{demo.port}"))
            shown = f"{example.command}\nexit {done.exit_code}, answered {done.status}: {done.body}"
            assert (done.exit_code, done.stderr) == (0, ""), f"{shown}\nstderr: {done.stderr}"
            assert done.status == example.status, shown
            assert done.body is not None, shown
            answers.append(json.loads(done.body))
            assert_same_shape(json.loads(example.response), answers[-1], like=AS_PRINTED)
        event_id = shell.run('printf %s "$EVENT_ID"').stdout
        assert event_id == str(uuid.UUID(event_id))
        assert [a["event_id"] for a in answers if isinstance(a, dict) and a.get("status") == "removed"] == [
            event_id
        ]
        assert demo.interrupt() == 0, demo.printed()
    assert "Traceback" not in demo.printed()


def run_in_order(examples: list[Example], live_server: LiveServer, prefix: str, tmp_path: Path) -> None:
    write_heartbeats(REDIS_URL, prefix, HEARTBEATS)
    env = {"PATH": os.environ["PATH"], "MANAGEMENT_API_KEY": API_KEY, "EVENT_ID": ""}
    for number, example in enumerate(examples):
        status, body = run_example(example, live_server, env, tmp_path / f"response-{number}")
        assert status == example.status, f"{example.command}\nanswered {status}: {body}"
        if example.language == "text":
            assert _metric_families(example.response) <= _metric_families(body)
            continue
        answer = json.loads(body)
        assert_same_shape(json.loads(example.response), answer)
        if not env["EVENT_ID"] and isinstance(answer, dict) and answer.get("outcome") == "queued":
            env["EVENT_ID"] = answer["event_id"]
    assert env["EVENT_ID"]


def _assert_the_key_stays_out_of_the_logs(server: LiveServer) -> None:
    """After right, wrong and malformed requests (the server logs at DEBUG), no line holds the key."""
    right = {"Authorization": f"Bearer {API_KEY}"}
    httpx.post(f"{server.base_url}/queue/events", json={"account_id": "DU123456"}, headers=right)
    httpx.delete(f"{server.base_url}/queue/events/not-an-id", headers={"Authorization": "Bearer wrong"})
    server.stop()
    log = server.log.read_text(encoding="utf-8")
    assert "Application shutdown complete" in log
    assert "event removed by an operator" in log
    assert API_KEY not in log
