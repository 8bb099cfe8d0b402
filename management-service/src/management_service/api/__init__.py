"""The HTTP layer: dependencies, error handlers and the routes of each area."""
