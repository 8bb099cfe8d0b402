"""event_processor."""
