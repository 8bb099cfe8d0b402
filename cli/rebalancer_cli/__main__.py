"""`python -m rebalancer_cli` is the `rebalancer` command."""

from rebalancer_cli.app import app

app()
