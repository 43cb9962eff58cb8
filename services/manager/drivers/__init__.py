"""Drivers turn a cluster's desired size into running engines.

`local` runs JVMs on this machine; `kubernetes` applies a namespace per cluster to a
Kubernetes API server. Both are chosen by `ESS_DRIVER` and meet the `Driver` protocol.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple, Protocol

import structlog

from libs.common.engines import ENGINE_NO_ANSWER, SearchEngine
from libs.common.models import ClusterRecord, ClusterSpec, EngineCredentials
from services.manager.planning import EngineObservation, EngineSize
from services.manager.settings import ManagerSettings


class EngineUnavailable(Exception):
    """The engine cannot be started here: not installed, no Java, or no free port slot (the one that
    passes; a delete waits it out for the final snapshot, a reconcile marks the cluster failed)."""


class DataGone(EngineUnavailable):
    """Permanent: a formed cluster's data is gone from where it lived; it is not started empty."""


class NoCredentials(Exception):
    """Permanent: this driver's engines have no credentials to rotate."""


class ResizeInProgress(Exception):
    """Temporary: a change of nodes advanced one step (a node joining, a drain under way); look
    again soon. The message says what is under way, for the cluster's status reason; `endpoint`,
    where the cluster is to be reached from now on (its usual node is about to restart)."""

    def __init__(self, message: str, endpoint: str | None = None):
        super().__init__(message)
        self.endpoint = endpoint


class ResizeAbandoned(Exception):
    """A change of nodes that could not progress within its bound was given up: the engine
    still runs at its old size. The message says why and what a person can do about it."""


class Driver(Protocol):
    # engine -> versions it can run, the default first
    engine_versions: dict[str, list[str]]
    # engine -> the modules it lacks here (libs.common.engines.capabilities); the platform avoids them
    engine_lacks: dict[str, frozenset[str]]

    # the size this driver runs a spec at; `observe` reports sizes in the same terms
    def size_for(self, spec: ClusterSpec) -> EngineSize: ...
    async def observe(self, cluster_id: str) -> EngineObservation: ...
    # start and resize return the endpoint; they take the whole record because a driver
    # may need more of it than the size (Kubernetes labels namespaces with the tenant)
    async def start(self, cluster: ClusterRecord, size: EngineSize) -> str: ...
    # why a start must wait its turn now (the machine's cores are busy starting others), or None
    def start_queued(self, cluster: ClusterRecord, size: EngineSize) -> str | None: ...
    # one step toward `new`; ResizeInProgress while more steps follow. The driver is the one
    # owner of draining: it knows its nodes' names and drains those that go before removing them
    async def resize(self, cluster: ClusterRecord, old: EngineSize | None, new: EngineSize) -> str: ...
    async def remove(self, cluster_id: str) -> None: ...
    # flush and stop every node, keeping the data (start wakes it); returns the store's bytes
    async def hibernate(self, cluster: ClusterRecord) -> Stored | None: ...  # what it holds, if read
    async def rotate_credentials(self, cluster: ClusterRecord) -> EngineCredentials: ...
    async def orphans(self, known_ids: set[str]) -> set[str]: ...
    # the periodic pass: keep what makes starts fast ready (local: the pool of standby JVMs)
    def keep_warm(self) -> None: ...


class Stored(NamedTuple):
    """What a cluster holds as it goes to sleep: its store is metered, both are shown, no wake needed."""

    docs: int
    store_bytes: int


async def flush_and_measure(engine: SearchEngine, timeout_s: float = 30.0) -> Stored | None:
    """Before a hibernation stops an engine: flush it (the wake replays no translog) and read what
    it holds (the store's size is metered while it sleeps). Best effort: an acknowledged write is
    in the translog already, so a failed flush loses nothing; the figures are then None, unknown
    (not 0: a second pass at an engine already stopping must not wipe what the first one read)."""
    try:
        await asyncio.wait_for(engine.admin().flush(), timeout_s)
        stats = await asyncio.wait_for(engine.stats(), timeout_s)
        return Stored(stats.docs, stats.store_bytes)
    except ENGINE_NO_ANSWER as exc:
        structlog.get_logger("drivers").warning("flush before hibernation failed", error=str(exc))
        return None
    finally:
        await engine.close()


def build_driver(settings: ManagerSettings) -> Driver:
    """The driver named by `ESS_DRIVER`, given the settings (it reads its own section)."""
    if settings.driver == "local":
        from services.manager.drivers.local import LocalDriver

        return LocalDriver(settings)
    if settings.driver == "kubernetes":
        from services.manager.drivers.kubernetes import KubernetesDriver

        return KubernetesDriver(settings)
    raise ValueError(f"unknown driver {settings.driver!r}")
