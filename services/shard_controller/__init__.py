"""The shard controller: shard, replica and node-count decisions per cluster.

So far it connects to NATS and answers /health and /ready; planning comes with its own issue.
"""
