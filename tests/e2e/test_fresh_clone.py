"""A fresh checkout on a machine with only the system's python3 (Debian's is externally managed: PEP
668 refuses pip installs) and no uv anywhere: `make setup`, `make demo-once` and `./rebalancer` work
as the README prints them, with nothing but HOME and PATH=/usr/bin:/bin in the environment.

The copy shares the uv cache of this checkout (UV_CACHE_DIR) so that it does not download every
package again; the install of uv itself goes through pip as on a new machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import ROOT

pytestmark = pytest.mark.e2e
SYSTEM_PATH = "/usr/bin:/bin"


def fresh_checkout(target: Path) -> Path:
    """The files a clone of this tree would have (tracked, or new and not ignored), copied."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def uv_cache() -> str:
    return subprocess.run(
        [str(ROOT / ".tools" / "bin" / "uv"), "cache", "dir"], capture_output=True, text=True, check=True
    ).stdout.strip()


def as_new_user(checkout: Path, home: Path, *command: str) -> subprocess.CompletedProcess[str]:
    environment = {"HOME": str(home), "PATH": SYSTEM_PATH, "UV_CACHE_DIR": uv_cache()}
    return subprocess.run(
        ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in environment.items()), *command],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_fresh_checkout_sets_up_runs_the_demo_and_the_command_with_only_system_python(
    tmp_path: Path,
) -> None:
    assert shutil.which("uv", path=SYSTEM_PATH) is None, (
        "this test needs a machine without uv on /usr/bin:/bin"
    )
    checkout = fresh_checkout(tmp_path / "checkout")
    home = tmp_path / "home"
    home.mkdir()
    assert not (checkout / ".venv").exists()

    setup = as_new_user(checkout, home, "make", "setup")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "installing uv" in setup.stderr
    assert (checkout / ".tools" / "bin" / "uv").is_file()
    venv = (checkout / ".venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in venv  # built on the system's python3, not on a tool of this machine's
    assert not (home / ".local" / "bin" / "uv").exists()

    demo = as_new_user(checkout, home, "make", "demo-once")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    words = " ".join(demo.stdout.split())  # rich wraps lines at the terminal's width
    assert words.count("is at its targets (planning again gives no orders)") == 2

    command = as_new_user(checkout, home, "./rebalancer", "--help")
    assert command.returncode == 0, command.stderr
    assert "Event-driven portfolio rebalancer" in command.stdout
