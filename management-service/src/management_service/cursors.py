"""The history listing's page cursors: opaque to a client, the last event's place to the API.

A cursor is the URL-safe base64 of `created_at|event_id` of the last event of a page (see
rebalancer_shared.store.event_queries: keyset pages). Anything else is refused with a message that
says where a cursor comes from.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from rebalancer_shared.store import EventSummary, PageKey


class BadCursor(ValueError):
    """A `cursor` this API did not give out."""


def cursor_after(event: EventSummary) -> str:
    raw = f"{event.created_at.isoformat()}|{event.event_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page_key(cursor: str) -> PageKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, event_id = raw.partition("|")
        key = PageKey(datetime.fromisoformat(moment), uuid.UUID(event_id))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadCursor(
            "cursor is not one this API gave out: pass the `next_cursor` of the page before, unchanged"
        ) from exc
    if key.created_at.tzinfo is None:
        raise BadCursor("cursor is not one this API gave out: its time has no zone")
    return key
