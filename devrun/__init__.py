"""The developer's local run: engine set-up, an embedded nats-server, and the one platform
supervisor (`supervisor.py`) that `make up`, the tests' fixtures and the benchmarks all use.

A tool above the services (like `cli/`), outside `libs/`: it starts them and stops their engines,
and no service or library imports it (an import-linter contract in pyproject.toml).
"""
