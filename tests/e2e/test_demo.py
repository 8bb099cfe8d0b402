"""`rebalancer demo --once` on embedded defaults: the live run reaches the targets."""

from __future__ import annotations

import subprocess
import sys

from tests.support.servers import ROOT


def test_demo_once_shows_the_dry_run_placing_nothing_and_the_live_run_reaching_the_targets() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rebalancer_cli", "demo", "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120", "HOME": str(ROOT)},
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert "dry-run plan" in out
    assert "orders sent to the broker by the dry run: 0" in out
    assert "live run on the simulated account" in out
    assert "Filled" in out
    assert out.count("is at its targets (planning again gives no orders)") == 2
    assert "NOT at its targets" not in out
    # The README's accounts; the broken strategy's account is for the API act, not the story.
    assert "DU123456 is at its targets" in out
    assert "DU789012 is at its targets" in out
    assert "DU000000" not in out
