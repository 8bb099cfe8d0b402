"""management_service."""
