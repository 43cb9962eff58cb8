"""The shard controller: clusters that size and heal themselves.

- `app.py`         wiring: the handlers on a broker, the metrics stream bound, KV state and leases
- `handlers.py`    NATS: metric samples in; plans, actions and node-count requests out
- `controller.py`  per sample: read, plan, act or advance an operation; returns its events
- `planning.py`    pure: `plan_shards` -> `ShardPlan` with its reason
- `state.py`       plans, operations in flight and leases in KV
"""
