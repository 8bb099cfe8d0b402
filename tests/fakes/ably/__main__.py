"""Run the fake Ably server as a process: `python -m tests.fakes.ably --port 8765 --control-port 8766`.

Once both ports listen it prints one JSON line, `{"port": N, "control_port": M}`, so a test that passed
port 0 learns the ports it got. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import structlog

from tests.fakes.ably.control import ControlServer
from tests.fakes.ably.server import FakeAblyServer


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.ably", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="the realtime WebSocket port (0: any free one)")
    parser.add_argument("--control-port", type=int, default=0, help="the control HTTP port (0: any free one)")
    parser.add_argument("--max-idle-interval-ms", type=int, default=15_000)
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    fake = FakeAblyServer(host=args.host, port=args.port, max_idle_interval_ms=args.max_idle_interval_ms)
    await fake.start()
    control = ControlServer(fake, args.host, args.control_port)
    control.start()
    print(json.dumps({"port": fake.port, "control_port": control.port}), flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        # The control thread blocks on the loop (threadsafe calls); stop it before the loop goes away.
        await asyncio.to_thread(control.stop)
        await fake.stop()


def main(argv: list[str] | None = None) -> int:
    # Logs go to stderr: stdout carries the one line with the ports.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(_run(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
