"""Named sets of the fake gateway's time knobs: how far away the gateway is and how fast the market answers.

- `realistic`: a gateway a few milliseconds away (5 ms round trip: the same data centre or a nearby
  cloud region), market data snapshots that bring their data and end 300 ms after the request, market
  orders filled 200 ms after the gateway has them, positions that show a fill 300 ms after it (the
  fake's default lag).
- `fast`: the same shape with the waits cut (1 ms, 30 ms, 20 ms, 30 ms), for tests that want the
  latency model's ordering without its cost.

Every other habit (pacing, market data lines, the 32-connection ceiling) stays as `TwsState` has it.
`apply_profile(state, "realistic")` sets the knobs in place; the fake as a process takes
`--profile realistic`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.tws.account import TwsState


@dataclass(frozen=True)
class LatencyProfile:
    round_trip_seconds: float
    snapshot_seconds: float  # until a snapshot's data and its end arrive
    fill_delay_seconds: float
    position_lag_seconds: float  # until the positions show a fill

    def to_json(self) -> dict[str, float]:
        """The `TwsState` knobs (for `POST /state` of a fake running as a process)."""
        return {
            "round_trip_seconds": self.round_trip_seconds,
            "snapshot_seconds": self.snapshot_seconds,
            "snapshot_data_seconds": self.snapshot_seconds,
            "fill_delay_seconds": self.fill_delay_seconds,
            "position_lag_seconds": self.position_lag_seconds,
        }


PROFILES = {
    "realistic": LatencyProfile(
        round_trip_seconds=0.005, snapshot_seconds=0.3, fill_delay_seconds=0.2, position_lag_seconds=0.3
    ),
    "fast": LatencyProfile(
        round_trip_seconds=0.001, snapshot_seconds=0.03, fill_delay_seconds=0.02, position_lag_seconds=0.03
    ),
}


def apply_profile(state: TwsState, name: str) -> LatencyProfile:
    """Set the state's time knobs to the profile's; `KeyError` for an unknown name."""
    profile = PROFILES[name]
    for key, value in profile.to_json().items():
        setattr(state, key, value)
    return profile
