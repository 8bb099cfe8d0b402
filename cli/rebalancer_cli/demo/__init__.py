"""`rebalancer demo`: the whole pipeline on embedded defaults (no IBKR account, Ably key or servers)."""
