"""The `rebalancer` console script: one typer app, one module per subcommand.

A subcommand module exposes a function and is registered here with `app.command(name)`; later
subcommands (demo, trigger, queue, ...) are added the same way.
"""

from __future__ import annotations

import typer

from rebalancer_cli.db_commands import db_app
from rebalancer_cli.demo_command import demo
from rebalancer_cli.history_commands import events_app, history
from rebalancer_cli.operator_commands import queue_app, trigger
from rebalancer_cli.plan_command import plan

app = typer.Typer(
    name="rebalancer",
    help="Event-driven portfolio rebalancer for Interactive Brokers accounts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Event-driven portfolio rebalancer for Interactive Brokers accounts."""


app.command("plan")(plan)
app.command("demo")(demo)
app.command("trigger")(trigger)
app.add_typer(queue_app, name="queue")
app.add_typer(events_app, name="events")
app.command("history")(history)
app.add_typer(db_app, name="db")
