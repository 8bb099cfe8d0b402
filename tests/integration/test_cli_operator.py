"""The operator commands against the real Redis and PostgreSQL, including the README's examples."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebalancer_cli.app import app
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
    assert (code, json.loads(out)["orders"][0]["symbol"]) == (0, "AAA")
    assert examples[8] == ["demo", "--once"]  # run by tests/e2e/test_demo.py


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
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, args
        assert "Usage" in result.stdout
