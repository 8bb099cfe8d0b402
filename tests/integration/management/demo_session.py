"""`rebalancer demo` as a real process, and one bash session that runs README blocks as a user pastes them.

The session wraps `curl` in a shell function that also writes the headers and the body of each
response to files of the block, so a test can read the status and the JSON of a block's last request
even when the block pipes the body elsewhere (`export EVENT_ID=$(curl ... | python3 ...)`). The
wrapper adds `-sS` only: curl shows no progress meter on a terminal, and would on the test's pipe.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.servers import ROOT, free_port

EXPORT_LINE = re.compile(r"^\s*(export MANAGEMENT_API_KEY=\S+)\s*$", re.MULTILINE)
CURL_WRAPPER = """
curl() {
  command curl -sS -D "$_README_RUN/$_README_BLOCK.headers" "$@" | tee "$_README_RUN/$_README_BLOCK.body"
  return "${PIPESTATUS[0]}"
}
"""


@dataclass
class DemoProcess:
    """`rebalancer demo --port PORT`, serving its management API."""

    port: int
    process: subprocess.Popen[bytes]
    output: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def printed(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def export_line(self) -> str:
        """The `export MANAGEMENT_API_KEY=...` line the demo printed."""
        found = EXPORT_LINE.search(self.printed())
        assert found is not None, f"the demo printed no export line:\n{self.printed()}"
        return found.group(1)

    def wait_until_idle(self, within_seconds: float = 15) -> None:
        """Until no live event is queued or processing: a user reads an answer before the next paste."""
        deadline = time.monotonic() + within_seconds
        while time.monotonic() < deadline:
            states = {e["state"] for e in httpx.get(f"{self.base_url}/queue/events", timeout=5).json()}
            if not states & {"queued", "processing"}:
                return
            time.sleep(0.05)
        raise AssertionError(f"the demo's events did not settle in {within_seconds} s")

    def interrupt(self) -> int:
        """Ctrl-C, as a user stops it; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)


def _wait_until_serving(demo: DemoProcess, deadline: float) -> None:
    while time.monotonic() < deadline:
        if demo.process.poll() is not None:
            raise AssertionError(f"the demo exited with {demo.process.returncode}:\n{demo.printed()}")
        if EXPORT_LINE.search(demo.printed()):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{demo.base_url}/openapi.json", timeout=1).status_code == 200:
                    return
        time.sleep(0.1)
    raise AssertionError(f"the demo did not serve its API in time:\n{demo.printed()}")


@contextlib.contextmanager
def demo_process(workdir: Path) -> Iterator[DemoProcess]:
    """The demo of this checkout on a free port, without a key from the environment (it makes one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MANAGEMENT_API_KEY"} | {"COLUMNS": "120"}
    rebalancer = Path(sys.executable).with_name("rebalancer")
    output = workdir / "demo.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [str(rebalancer), "demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    demo = DemoProcess(port, process, output)
    try:
        _wait_until_serving(demo, time.monotonic() + 90)
        yield demo
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class BlockResult:
    """What one pasted block did: exit code, what it printed, and its last HTTP answer."""

    exit_code: int
    stdout: str
    stderr: str
    status: int | None
    body: str | None


class ShellSession:
    """One `bash` process; each block runs in it in turn, so `export` carries to later blocks."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._blocks = 0
        self._log = (workdir / "session.log").open("wb")
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env | {"_README_RUN": str(workdir)},
            cwd=workdir,
            text=True,
        )
        self._send(CURL_WRAPPER)

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def run(self, block: str, within_seconds: float = 30) -> BlockResult:
        """Run `block` as pasted and wait for it to finish."""
        n = self._blocks = self._blocks + 1
        files = {kind: self.dir / f"{n}.{kind}" for kind in ("out", "err", "rc", "headers", "body")}
        self._send(
            f"_README_BLOCK={n}\n{{\n{block}\n}} > {files['out']} 2> {files['err']}\n"
            f"echo $? > {files['rc']}.tmp && mv {files['rc']}.tmp {files['rc']}"
        )
        deadline = time.monotonic() + within_seconds
        while not files["rc"].exists():
            assert time.monotonic() < deadline, f"the block did not finish in {within_seconds} s:\n{block}"
            assert self.process.poll() is None, "the shell exited"
            time.sleep(0.02)
        headers = files["headers"].read_text() if files["headers"].exists() else ""
        statuses = [line.split()[1] for line in headers.splitlines() if line.startswith("HTTP/")]
        return BlockResult(
            exit_code=int(files["rc"].read_text()),
            stdout=files["out"].read_text(),
            stderr=files["err"].read_text(),
            status=int(statuses[-1]) if statuses else None,
            body=files["body"].read_text() if files["body"].exists() else None,
        )

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def shell_session(workdir: Path, env: dict[str, str]) -> Iterator[ShellSession]:
    session = ShellSession(workdir, env)
    try:
        yield session
    finally:
        session.close()
