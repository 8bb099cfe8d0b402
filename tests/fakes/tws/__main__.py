"""Run the fake TWS as a process: `python -m tests.fakes.tws --port 0 --account DU1 --state s.json`.

`--state` names a JSON file (TwsState.to_json's shape): read at start when it exists, and rewritten
after every order, fill and cancel, so a test in another process can read what the fake received.
`--control-port` opens the HTTP control endpoint (control.py). `--profile realistic` (or `fast`) sets
the round trip, snapshot and fill delays (profiles.py). Once listening it prints one JSON line,
`{"port": N, "control_port": M}`. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from tests.fakes.tws.account import TwsState
from tests.fakes.tws.control import ControlServer
from tests.fakes.tws.profiles import PROFILES, apply_profile
from tests.fakes.tws.server import FakeTws
from tests.fakes.tws.threaded import FakeTwsThread


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.tws", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="the API port (0: any free one)")
    parser.add_argument("--account", action="append", default=[], help="a managed account (repeatable)")
    parser.add_argument("--cash", type=float, default=100_000.0, help="starting cash of new accounts")
    parser.add_argument("--state", type=Path, help="state file to read at start and rewrite on change")
    parser.add_argument("--control-port", type=int, default=None, help="open the HTTP control endpoint")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="latencies to model (profiles.py)")
    return parser.parse_args(argv)


def _writer(path: Path) -> Callable[[TwsState], None]:
    def write(state: TwsState) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=1))
        os.replace(tmp, path)

    return write


def main(argv: list[str] | None = None) -> int:
    # Logs go to stderr: stdout carries the one line with the ports.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    args = _parse_args(argv)
    state = TwsState()
    if args.state is not None and args.state.exists():
        state = TwsState.from_json(json.loads(args.state.read_text()))
    if args.profile is not None:
        apply_profile(state, args.profile)
    for account_id in args.account:
        if account_id not in state.accounts:
            state.add_account(account_id, args.cash)
    on_change = _writer(args.state) if args.state is not None else None
    tws = FakeTwsThread(FakeTws(state, host=args.host, port=args.port, on_change=on_change)).start()
    control = ControlServer(tws, args.host, args.control_port) if args.control_port is not None else None
    if control is not None:
        control.start()
    if on_change is not None:
        tws.call(on_change)
    print(json.dumps({"port": tws.port, "control_port": control.port if control else None}), flush=True)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    if control is not None:
        control.stop()
    tws.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
