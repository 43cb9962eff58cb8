"""The shard controller: clusters that size and heal themselves.

- `app.py`         wiring: metric samples in (durable consumer), KV state and leases
- `controller.py`  per sample: read, plan, act or advance an operation
- `planning.py`    pure: `plan_shards` -> `ShardPlan` with its reason
- `state.py`       plans, operations in flight and leases in KV
"""
