"""Loopback peers for the real client libraries: tws/ (ib_async), ably/ (the ably SDK)."""
