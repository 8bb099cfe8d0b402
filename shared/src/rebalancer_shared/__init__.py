"""rebalancer_shared."""
