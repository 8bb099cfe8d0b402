"""rebalancer_cli."""
