"""`rebalancer plan FILE`: plan one scenario, or a JSON list of them, and print the plan(s) as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from event_processor.planner import PlanError, PlanInput, plan_rebalance
from rebalancer_cli.scenario import ScenarioError, parse_scenario

EXIT_BAD_INPUT = 1


def plan(
    file: Annotated[
        str, typer.Argument(help="scenario JSON file, or - for standard input", show_default=False)
    ],
) -> None:
    """Print the plan of each scenario in FILE as JSON (see the README for the scenario format)."""
    try:
        raw = _read_json(file)
        single = not isinstance(raw, list)
        scenarios = [raw] if single else raw
        names = ["scenario"] if single else [f"scenario[{i}]" for i in range(len(scenarios))]
        inputs = [parse_scenario(item, name) for item, name in zip(scenarios, names, strict=True)]
        plans = [_plan(inp, name) for inp, name in zip(inputs, names, strict=True)]
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(json.dumps(plans[0] if single else plans, indent=2))


def _read_json(file: str) -> Any:
    where = "stdin" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(where, f"cannot read: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            where, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def _plan(inp: PlanInput, where: str) -> dict[str, Any]:
    try:
        return plan_rebalance(inp).to_dict()
    except PlanError as exc:
        location = ".".join(part for part in (where, exc.field, exc.symbol) if part)
        raise ScenarioError(location, exc.message) from None
