"""`rebalancer demo`: the whole pipeline on embedded defaults, no account, key or server needed."""

from __future__ import annotations

from typing import Annotated

import typer

from rebalancer_cli.demo.run import demo_main, port_free


def demo(
    once: Annotated[
        bool, typer.Option("--once", help="exit after the story instead of serving the API")
    ] = False,
    host: Annotated[str, typer.Option(help="where the management API listens")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the management API's port")] = 8000,
) -> None:
    """Run a dry-run and a live rebalance of two simulated accounts, then serve the management API.

    Everything is embedded: an in-process Redis, SQLite for the history, a simulated broker with two
    drifted accounts, and the strategy's allocations served by a local HTTP server. The code paths
    are production's: the broker's relay, the queue, the worker, the planner and the engine.
    """
    if not once and not port_free(host, port):
        typer.echo(
            f"error: port {port} on {host} is in use: run `rebalancer demo --port <another>`", err=True
        )
        raise typer.Exit(2)
    reached = demo_main(once, host, port)
    if not reached:
        typer.echo("error: an account did not reach its targets", err=True)
        raise typer.Exit(1)
