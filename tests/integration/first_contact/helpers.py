"""Running the `rebalancer` command and the services as a user would, in a folder of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rebalancer_shared.config import ENV_VARIABLES

ACCOUNTS_YAML = '- account_id: "DU123456"\n  notification:\n    channel: "strategy-name-100"\n'


def clean_environment(folder: Path, **variables: str) -> dict[str, str]:
    """The caller's environment without any setting of ours, pointed at files in `folder`."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARIABLES and k != "CONFIG_FILE"}
    return env | {
        "CONFIG_FILE": str(folder / "config.yaml"),
        "ACCOUNTS_FILE": str(folder / "accounts.yaml"),
        "LOG_FORMAT": "json",
        **variables,
    }


def prepare_folder(folder: Path, accounts_yaml: str = ACCOUNTS_YAML, config_yaml: str = "{}\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(config_yaml, encoding="utf-8")
    (folder / "accounts.yaml").write_text(accounts_yaml, encoding="utf-8")
    return folder


def rebalancer(
    folder: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`rebalancer ARGS` as a process in `folder`."""
    return subprocess.run(
        [sys.executable, "-m", "rebalancer_cli", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def plain_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not JSON log lines: what a person reads."""
    lines = []
    for line in stderr.strip().splitlines():
        try:
            json.loads(line)
        except ValueError:
            lines.append(line)
    return lines


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exit `code`, nothing on stdout, no traceback, one line for a person naming every needle."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = plain_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
