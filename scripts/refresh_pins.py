"""Write the exact pins of every resolved dependency into the root pyproject (`make lock`).

uv.lock records the registry's address, so it is not committed; the pins it resolved are copied
into `[tool.uv] constraint-dependencies` instead, which is what a fresh clone installs from.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
BLOCK = re.compile(r"(constraint-dependencies = \[\n)(.*?)(^\])", re.DOTALL | re.MULTILINE)


def exported_pins(uv: str) -> list[str]:
    out = subprocess.run(
        [
            uv,
            "export",
            "--no-hashes",
            "--all-packages",
            "--all-groups",
            "--no-emit-workspace",
            "--no-header",
            "--no-annotate",
            "--frozen",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    pins = [line.strip() for line in out.splitlines() if line.strip() and not line.startswith(("#", "-"))]
    return sorted(pins, key=str.lower)


def main() -> int:
    # The Makefile passes its private uv (.tools/bin/uv); a bare `uv` from the PATH otherwise.
    pins = exported_pins(sys.argv[1] if len(sys.argv) > 1 else "uv")
    if any("://" in pin for pin in pins):
        print("refusing to write a pin that names an address", file=sys.stderr)
        return 1
    text = PYPROJECT.read_text()
    body = "".join(f'    "{pin}",\n' for pin in pins)
    new, count = BLOCK.subn(lambda m: m.group(1) + body + m.group(3), text, count=1)
    if count != 1:
        print("constraint-dependencies block not found in pyproject.toml", file=sys.stderr)
        return 1
    PYPROJECT.write_text(new)
    print(f"pinned {len(pins)} packages in pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
