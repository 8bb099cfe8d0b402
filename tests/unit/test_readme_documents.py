"""What the README documents is what the code accepts: its allocation API example passes the
processor's own parser, and the paper-to-live checklist names settings that exist."""

from __future__ import annotations

import json
import re

from event_processor.allocations import parse_allocation_response
from rebalancer_shared.config import ENV_VARIABLES
from tests.support.servers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_allocation_api_example_is_accepted_by_the_processor() -> None:
    section = README.split("<!-- allocation-example", 1)[1]
    body = section.split("```json", 1)[1].split("```", 1)[0]
    allocation = parse_allocation_response("etf-blend-301-20", json.loads(body), sum_tolerance=0.01)
    assert allocation.weights["BTAL"] == 0.2817
    assert allocation.name == "etf-blend-301-20"
    assert len(allocation.weights) == 6


def test_the_paper_to_live_checklist_names_only_real_settings() -> None:
    checklist = README.split("## From paper to live", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Z_]{3,})(?:=[^`]*)?`", checklist))
    assert {"TRADING_MODE", "ENFORCE_LIVE_GUARD"} <= named
    assert named - set(ENV_VARIABLES) == set()
