"""event_broker."""
