"""The history listings' page cursors: opaque to a client, the last row's place to the API.

A cursor is the URL-safe base64 of `time|key` of the last row of a page (see
rebalancer_shared.store.history_queries: keyset pages): the event's accept time and id, the order's
record time and row id. Anything else is refused with a message that says where a cursor comes from.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import datetime

from rebalancer_shared.store import PageKey

_NOT_OURS = "cursor is not one this API gave out: pass the `next_cursor` of the page before, unchanged"


class BadCursor(ValueError):
    """A `cursor` this API did not give out."""


def cursor_after(at: datetime, key: uuid.UUID | int) -> str:
    """The cursor of the page that follows the row placed at (`at`, `key`)."""
    raw = f"{at.isoformat()}|{key}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page_key(cursor: str, key_type: Callable[[str], uuid.UUID | int]) -> PageKey:
    """The place a cursor stands for; its key read by `key_type` (uuid.UUID or int)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, key = raw.partition("|")
        place = PageKey(datetime.fromisoformat(moment), key_type(key))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadCursor(_NOT_OURS) from exc
    if place.at.tzinfo is None:
        raise BadCursor(f"{_NOT_OURS} (its time has no zone)")
    return place
