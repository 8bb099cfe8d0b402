"""`rebalancer demo`: the whole pipeline on embedded defaults, no account, key or server needed."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from rebalancer_cli.demo.run import DemoApiKey, demo_main, free_port_near, port_free

DEFAULT_HOST = "127.0.0.1"


def busy_port_message(host: str, port: int) -> str:
    """What to type instead, with a port that is free now; both ways work without `uv` on the PATH."""
    free = free_port_near(host, port)
    make_host, cli_host = ("", "") if host == DEFAULT_HOST else (f" HOST={host}", f" --host {host}")
    return (
        f"error: port {port} on {host} is in use (another demo or server?); port {free} is free:\n"
        f"  make demo{make_host} PORT={free}\n"
        f"  ./rebalancer demo{cli_host} --port {free}"
    )


def demo(
    once: Annotated[
        bool, typer.Option("--once", help="exit after the story instead of serving the API")
    ] = False,
    host: Annotated[str, typer.Option(help="where the management API listens")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="the management API's port")] = 8000,
) -> None:
    """Run a dry-run and a live rebalance of two simulated accounts, then serve the management API.

    Everything is embedded: an in-process Redis, SQLite for the history, a simulated broker with the
    README's drifted accounts DU123456 and DU789012 (and DU000000, whose strategy's allocation API is
    broken), and the allocations served by a local HTTP server. The code paths are production's: the
    broker's relay, the queue, the worker, the planner and the engine. The API uses MANAGEMENT_API_KEY
    when it is set, else a new key that the demo prints.
    """
    if not once and not port_free(host, port):
        typer.echo(busy_port_message(host, port), err=True)
        raise typer.Exit(2)
    reached = demo_main(once, host, port, DemoApiKey.from_environment(os.environ))
    if not reached:
        typer.echo("error: an account did not reach its targets", err=True)
        raise typer.Exit(1)
