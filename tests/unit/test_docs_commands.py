"""What the docs and the programs tell a user to type works on a machine without `uv` on the PATH.

The checkout's uv lives in `.tools/` (`make setup`); a user runs `make ...`, `./rebalancer ...` or
`.venv/bin/python ...`. The Dockerfiles are not checked: their images install uv themselves.
"""

from __future__ import annotations

import re
import subprocess

from tests.support.servers import ROOT

# `uv run ...` as a command, not `.tools/bin/uv run` (the path of the checkout's own uv).
BARE_UV = re.compile(r"(?<![\w./-])uv (run|sync|pip|lock|tool)\b")


def test_no_doc_or_program_text_tells_the_user_to_type_a_bare_uv_command() -> None:
    files = [ROOT / "README.md", ROOT / "management-service" / "API.md", ROOT / "Makefile"]
    files += sorted((ROOT / "bench").rglob("*.py")) + sorted((ROOT / "cli").rglob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BARE_UV.search(line)
    ]
    assert found == []


def test_make_demo_passes_port_and_host_to_the_demo() -> None:
    printed = subprocess.run(
        ["make", "-n", "demo", "PORT=8011", "HOST=0.0.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".venv/bin/rebalancer demo --host 0.0.0.0 --port 8011" in printed
