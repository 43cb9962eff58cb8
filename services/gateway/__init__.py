"""The gateway: the data plane tenants point their clients at."""
