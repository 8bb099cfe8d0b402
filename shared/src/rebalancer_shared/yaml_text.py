"""YAML mistakes told in one line: where (line, column) and what, without PyYAML's multi-line excerpt."""

from __future__ import annotations

import yaml


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """`line 3, column 7: mapping values are not allowed here` (or PyYAML's first line as a fallback)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot be parsed"
        if mark is not None:
            return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
        return str(problem)
    return str(exc).strip().splitlines()[0]
