"""The pure intake mapping: a trigger payload, as received, to the command it asks for.

Dry run is the safe default: only the exact payload value `{"exec": "rebalance"}` trades. A payload
that names another known command gets that command (they are all read-only except cancel-orders);
`{}`, `{"exec": "dry_run"}`, a missing, unknown or non-string value, and a payload that is not a JSON
object at all become `print-rebalance`, with a note saying why so the caller can log it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from rebalancer_shared.events import Command

DRY_RUN = Command.PRINT_REBALANCE


@dataclass(frozen=True)
class TriggerDecision:
    """The payload as a JSON object, the command it maps to, and why (None when explicit)."""

    data: dict[str, Any]
    command: Command
    note: str | None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> tuple[Any, bool]:
    """The value with what PostgreSQL JSONB cannot hold replaced: NUL and lone surrogates in text
    become U+FFFD, NaN and infinities become null. Returns (value, whether anything changed)."""
    if isinstance(value, str):
        clean = _UNSTORABLE.sub("\ufffd", value)
        return clean, clean != value
    if isinstance(value, float) and not math.isfinite(value):
        return None, True
    if isinstance(value, dict):
        pairs = [(_storable(str(k)), _storable(v)) for k, v in value.items()]
        return {k: v for (k, _), (v, _) in pairs}, any(kc or vc for (_, kc), (_, vc) in pairs)
    if isinstance(value, list | tuple):
        items = [_storable(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    return value, False


def storable_payload(data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A payload object the history can store, with a note when something had to be replaced."""
    clean, changed = _storable(data)
    return clean, ("payload held NUL, lone surrogate or non-finite values: replaced" if changed else None)


def normalize_payload(raw: object) -> tuple[dict[str, Any], str | None]:
    """Turn a received payload into a JSON object; anything else becomes `{}` with a note."""
    data, note = _object_of(raw)
    clean, clean_note = storable_payload(data)
    notes = [n for n in (note, clean_note) if n]
    return clean, "; ".join(notes) or None


def _object_of(raw: object) -> tuple[dict[str, Any], str | None]:
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}, None
    if raw is None or raw in ("", b""):
        return {}, "empty payload"
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return {}, "payload is not UTF-8 text"
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return {}, "payload is not JSON"
        if isinstance(parsed, dict):
            return {str(k): v for k, v in parsed.items()}, None
        return {}, f"payload is JSON {type(parsed).__name__}, not an object"
    return {}, f"payload of type {type(raw).__name__} is not a JSON object"


def command_for_payload(data: dict[str, Any]) -> tuple[Command, str | None]:
    """The command a payload object asks for; a dry run unless it names a known command."""
    value = data.get("exec")
    if value is None:
        return DRY_RUN, "no exec value: dry run"
    if not isinstance(value, str):
        return DRY_RUN, f"exec value {value!r} is not a string: dry run"
    try:
        return Command(value), None
    except ValueError:
        return DRY_RUN, f"exec value {value!r} is not a command: dry run"


def decide_trigger(raw: object) -> TriggerDecision:
    """Map a received trigger payload to its data object and command (pure; no logging)."""
    data, payload_note = normalize_payload(raw)
    command, command_note = command_for_payload(data)
    notes = [n for n in (payload_note, command_note) if n]
    return TriggerDecision(data=data, command=command, note="; ".join(notes) or None)
