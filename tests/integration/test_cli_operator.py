"""The operator commands against the real Redis and PostgreSQL, including the README's examples."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebalancer_cli.app import app
from rebalancer_shared.store import EventStore, OrderRecord, RunRecord, RunStatus
from tests.support.servers import REDIS_URL, ROOT

ACCOUNTS = '- account_id: "DU123456"\n  notification:\n    channel: "strategy-name-100"\n'
SCENARIO = {"targets": {"AAA": 1.0}, "positions": {}, "prices": {"AAA": 10.0}, "cash": 1000.0}


@pytest.fixture
def env(prefix: str, fresh_database_url: str, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "accounts.yaml").write_text(ACCOUNTS)
    (tmp_path / "scenario.json").write_text(json.dumps(SCENARIO))
    return {
        "CONFIG_FILE": str(ROOT / "config.yaml"),
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "DATABASE_URL": fresh_database_url,
        "ACCOUNTS_FILE": str(tmp_path / "accounts.yaml"),
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def readme_examples() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- cli-examples", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("./rebalancer ")]


def run_as_printed(env: dict[str, str], folder: Path, *args: str) -> tuple[int, str, str]:
    """The checkout's `./rebalancer` entry script as a process, as a user types it (in `folder`)."""
    done = subprocess.run(
        [str(ROOT / "rebalancer"), *args],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


def test_readme_cli_examples_run_as_printed_in_order(env: dict[str, str], tmp_path: Path) -> None:
    examples = readme_examples()
    assert [e[0] for e in examples] == [
        "trigger",
        "trigger",
        "trigger",
        "queue",
        "queue",
        "queue",
        "queue",
        "events",
        "events",
        "history",
        "plan",
        "demo",
    ]
    code, out, _ = run_as_printed(env, tmp_path, *examples[0])
    first = json.loads(out)
    assert (code, first["outcome"]) == (0, "queued")
    code, out, _ = run_as_printed(env, tmp_path, *examples[1])
    assert json.loads(out) == {"event_id": first["event_id"], "outcome": "duplicate"}
    code, out, _ = run_as_printed(env, tmp_path, *examples[2])
    assert json.loads(out)["outcome"] == "queued"
    code, out, _ = run_as_printed(env, tmp_path, *examples[3])
    assert json.loads(out)["queue_length"] == 2
    code, out, _ = run_as_printed(env, tmp_path, *examples[4])
    assert [e["exec_command"] for e in json.loads(out)] == ["print-positions", "rebalance"]
    retry = [first["event_id"] if a == "$EVENT_ID" else a for a in examples[5]]
    code, out, _ = run_as_printed(env, tmp_path, *retry)
    assert (code, json.loads(out)) == (0, {"event_id": first["event_id"], "outcome": "queued"})
    remove = [first["event_id"] if a == "$EVENT_ID" else a for a in examples[6]]
    code, out, _ = run_as_printed(env, tmp_path, *remove)
    assert (code, json.loads(out)["status"]) == (0, "removed")
    code, out, _ = run_as_printed(env, tmp_path, *remove)
    assert code == 1, "a removed event is not in the queue"
    code, out, err = run_as_printed(env, tmp_path, *retry)
    assert code == 1
    assert "is not in the queue" in err
    code, out, _ = run_as_printed(env, tmp_path, *examples[7])
    assert code == 0
    assert "2 event(s), newest first" in out
    # Newest first: the live rebalance (still queued) was accepted after the removed print-positions.
    assert out.index("rebalance") < out.index("removed")
    show = [first["event_id"] if a == "$EVENT_ID" else a for a in examples[8]]
    code, out, _ = run_as_printed(env, tmp_path, *show)
    assert (code, f"event {first['event_id']}: print-positions for DU123456" in out) == (0, True)
    steps = [line.split("│")[2].strip() for line in out.splitlines() if line.startswith("│ 20")]
    assert steps == ["queued", "duplicate", "removed"]  # the second trigger is kept as a duplicate
    code, out, _ = run_as_printed(env, tmp_path, *examples[9])
    assert (code, json.loads(out)) == (0, [])  # nothing ran here: no processor
    code, out, _ = run_as_printed(env, tmp_path, *examples[10])
    assert (code, json.loads(out)["orders"][0]["symbol"]) == (0, "AAA")
    assert examples[11] == ["demo", "--once"]  # run by tests/e2e/test_demo.py


def test_live_rebalance_needs_allow_live(env: dict[str, str]) -> None:
    code, out, err = run(env, "trigger", "DU123456", "rebalance")
    assert code == 2
    assert "--allow-live" in err
    assert out == ""


def test_unknown_account_and_command_are_named(env: dict[str, str]) -> None:
    code, _, err = run(env, "trigger", "DU999", "print-positions")
    assert code == 2
    assert "'DU999' is not in" in err
    code, _, err = run(env, "trigger", "DU123456", "sell-everything")
    assert code == 2
    assert "sell-everything" in err


def test_remove_refuses_unknown_and_malformed_ids(env: dict[str, str]) -> None:
    code, _, err = run(env, "queue", "remove", "not-an-id")
    assert (code, "is not an event id" in err) == (2, True)
    code, _, err = run(env, "queue", "remove", "6f1c1a0e-2a43-4b8e-9d57-0a5b8f8f7c11")
    assert code == 1
    assert re.search("is not in the queue", err)


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["demo", "--help"],
        ["trigger", "--help"],
        ["queue", "status", "--help"],
        ["queue", "events", "--help"],
        ["queue", "remove", "--help"],
        ["plan", "--help"],
        ["events", "list", "--help"],
        ["events", "show", "--help"],
        ["history", "--help"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, args
        assert "Usage" in result.stdout


def _record_a_run(database_url: str, event_id: str) -> str:
    """A filled live run of the event with one order, written as the processor writes it."""

    async def write() -> str:
        store = EventStore.from_url(database_url)
        try:
            run = RunRecord(
                event_id=uuid.UUID(event_id),
                attempt=1,
                account_id="DU123456",
                exec_command="rebalance",
                execution_mode="live",
                worker="test",
                status=RunStatus.SUCCESS,
                started_at=datetime.now(UTC),
                message="all orders filled",
            )
            await store.save_run(run)
            order = OrderRecord("AAA", "BUY", 7.0, "MKT", "ref-1", "Filled", 7.0, 10.5, seq=0)
            await store.save_orders(run.run_id, run.event_id, [order])
            return str(run.run_id)
        finally:
            await store.close()

    return asyncio.run(write())


def test_history_shows_an_accounts_runs_with_their_orders(env: dict[str, str]) -> None:
    _, out, _ = run(env, "trigger", "DU123456", "rebalance", "--allow-live")
    event_id = json.loads(out)["event_id"]
    run_id = _record_a_run(env["DATABASE_URL"], event_id)

    code, out, _ = run(env, "history", "DU123456")
    assert code == 0
    assert f"run {run_id}: success (live) rebalance" in out
    [row] = [line.split("│")[1:-1] for line in out.splitlines() if line.startswith("│ AAA")]
    assert [cell.strip() for cell in row] == ["AAA", "BUY", "7.0", "7.0", "10.5", "Filled", ""]

    code, out, _ = run(env, "history", "DU123456", "--json")
    [listed] = json.loads(out)
    assert (listed["run_id"], listed["event_id"], listed["orders"][0]["avg_fill_price"]) == (
        run_id,
        event_id,
        10.5,
    )
    code, out, _ = run(env, "events", "show", event_id, "--json")
    assert [r["run_id"] for r in json.loads(out)["runs"]] == [run_id]
    code, out, _ = run(env, "events", "list", "--command", "rebalance", "--json")
    assert [e["event_id"] for e in json.loads(out)] == [event_id]
    code, out, _ = run(env, "events", "list", "--command", "print-positions", "--json")
    assert json.loads(out) == []


def test_history_commands_name_bad_input(env: dict[str, str]) -> None:
    code, _, err = run(env, "events", "list", "--since", "2026-11-02T14:30:00")
    assert (code, "has no zone" in err) == (2, True)
    code, _, err = run(env, "events", "list", "--until", "yesterday")
    assert (code, "is not an ISO 8601 time" in err) == (2, True)
    code, _, err = run(env, "events", "show", "not-an-id")
    assert (code, "is not an event id" in err) == (2, True)
    code, _, err = run(env, "events", "show", "6f1c1a0e-2a43-4b8e-9d57-0a5b8f8f7c11")
    assert (code, "is not in the history" in err) == (1, True)
