"""Reporting: polls every ready cluster, publishes metric and usage events, serves Prometheus.

- `app.py`         wiring: KV watch of clusters, the streams it owns, /metrics, the period sweeper
- `handlers.py`    NATS: gateway activity in; metric samples and usage records out
- `polling.py`     one poll loop per cluster, metric events, usage meters in KV
- `rates.py`       pure: rates from counters that may restart
- `metering.py`    pure: samples folded into per-period usage records
- `exposition.py`  Prometheus: the fleet's latest samples and the service's own metrics
"""
