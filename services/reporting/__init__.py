"""Reporting: polls clusters, publishes metric events, serves Prometheus and metering.

So far it connects to NATS and answers /health and /ready; polling comes with its own issue.
"""
