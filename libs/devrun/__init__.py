"""The developer's local run: engine set-up, an embedded nats-server, and the platform supervisor.

Used by `make setup|up|down` and by the test fixtures; not imported by any service.
"""
