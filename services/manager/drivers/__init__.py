"""Drivers turn a cluster's desired size into running engines; `local` runs JVMs here."""

from __future__ import annotations

from typing import Protocol

from services.manager.planning import EngineObservation, EngineSize


class EngineUnavailable(Exception):
    """Permanent: the engine cannot be started here (not installed, no Java)."""


class DrainInProgress(Exception):
    """Temporary: nodes that go away still hold the only copy of some shards; look again later."""


class Driver(Protocol):
    # engine -> versions it can run, the default first
    engine_versions: dict[str, list[str]]

    async def observe(self, cluster_id: str) -> EngineObservation: ...
    async def start(self, cluster_id: str, size: EngineSize) -> str: ...
    async def resize(self, cluster_id: str, old: EngineSize | None, new: EngineSize) -> str: ...
    async def remove(self, cluster_id: str) -> None: ...
    async def orphans(self, known_ids: set[str]) -> set[str]: ...


def build_driver(settings) -> Driver:
    """The driver named by `ESS_DRIVER`."""
    if settings.driver == "local":
        from services.manager.drivers.local import LocalDriver

        return LocalDriver(settings)
    raise ValueError(f"unknown driver {settings.driver!r}")
