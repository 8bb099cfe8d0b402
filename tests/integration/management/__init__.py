"""The management service over HTTP, against the real Redis and PostgreSQL."""
