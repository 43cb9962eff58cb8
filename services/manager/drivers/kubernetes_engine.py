"""What the kubernetes driver asks of a tenant's engine, and how long it waits for it.

The engine's health, which is what makes a cluster `ready`: an engine that does not answer
has no colour. Where the manager cannot reach engines at all (ESS_KUBE_ENGINES_REACHABLE=false,
a manager outside the cluster) it never dials them, says so, and relies on the pods'
readiness probes. Draining before nodes go, given up when it makes no progress for
ESS_KUBE_DRAIN_TIMEOUT_S so a scale-in can never hang, and lifting a drain's exclusions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from libs.common.engines import ENGINE_NO_ANSWER, SearchEngine
from libs.common.models import EngineCredentials
from libs.common.settings import KubernetesSection
from services.manager.drivers import ResizeAbandoned, ResizeInProgress

ConnectEngine = Callable[[str, str, str | None, str | None], SearchEngine]
Credentials = Callable[[str], Awaitable[EngineCredentials | None]]


@dataclass(frozen=True)
class Health:
    """The engine's colour, or None with a note saying why there is none."""

    status: str | None
    note: str | None = None
    probes_only: bool = False  # ready rests on the pods' readiness probes: the manager cannot ask


@dataclass
class _Drain:
    leaving: tuple[str, ...]
    pending: int | None  # shard copies still to move when last asked; None: never got an answer
    progressed_at: float  # when the count last fell (or the drain began)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} after a timeout"


class EngineCalls:
    def __init__(self, settings: KubernetesSection, connect: ConnectEngine,
                 clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._connect = connect
        self._clock = clock
        self._drains: dict[str, _Drain] = {}
        self._log = structlog.get_logger("kubernetes-driver")

    def _dial(self, engine: str, endpoint: str, credentials: EngineCredentials | None) -> SearchEngine:
        user, password = (credentials.username, credentials.password) if credentials else (None, None)
        return self._connect(engine, endpoint, user, password)

    async def health(self, engine: str, endpoint: str, credentials: EngineCredentials | None, pods: int) -> Health:
        """Asked once every pod is ready; only an answer from the engine gives a colour."""
        if not self._settings.kube_engines_reachable:
            return Health(None, f"{pods} pod(s) ready by their readiness probes; health unknown: the manager "
                                "does not reach engines (ESS_KUBE_ENGINES_REACHABLE=false)", probes_only=True)
        search = self._dial(engine, endpoint, credentials)
        try:
            answer = await asyncio.wait_for(search.health(), timeout=self._settings.kube_engine_timeout_s)
            return Health(answer.status)
        except ENGINE_NO_ANSWER as exc:
            return Health(None, f"{pods} pod(s) ready, but the engine does not answer the manager at {endpoint} "
                                f"({_why(exc)}); run the manager where it reaches cluster "
                                "Services (its pod does), or set ESS_KUBE_ENGINES_REACHABLE=false to rely on "
                                "the pods' readiness probes")
        finally:
            await search.close()

    async def drain(self, cluster_id: str, engine: str, endpoint: str, credentials: EngineCredentials | None,
                    leaving: list[str], remaining: int) -> None:
        """Start (or check) the drain of `leaving`: returns once they may go (see `pending_drain`);
        ResizeInProgress while shards move, ResizeAbandoned once it has stalled too long."""
        if not self._settings.kube_engines_reachable:
            raise ResizeAbandoned(f"{', '.join(leaving)} must be drained before they go, and the manager does not "
                                  "reach engines (ESS_KUBE_ENGINES_REACHABLE=false); scale in from a manager "
                                  "that reaches them")
        drain = self._drains.get(cluster_id)
        fresh = drain is None or drain.leaving != tuple(leaving)
        if fresh:
            drain = self._drains[cluster_id] = _Drain(tuple(leaving), None, self._clock())
        timeout = self._settings.kube_engine_timeout_s
        search = self._dial(engine, endpoint, credentials)
        try:
            if fresh:  # another drain's exclusions (a surge's hand-over) go first: all voters excluded is refused
                await asyncio.wait_for(search.admin().clear_exclusions(), timeout)
            await asyncio.wait_for(search.admin().exclude_nodes(leaving), timeout)
            pending = await asyncio.wait_for(search.admin().drain_pending(leaving, remaining), timeout)
        except ENGINE_NO_ANSWER as exc:
            pending, problem = None, f"the engine does not answer the manager at {endpoint} ({_why(exc)})"
            fix = "run the manager where it reaches cluster Services (its pod does)"
        else:
            problem = f"{pending} shard copies still to move"
            fix = f"GET {endpoint}/_cluster/allocation/explain says why they cannot move"
        finally:
            await search.close()
        if pending == 0:
            self._drains.pop(cluster_id, None)
            return
        if pending is not None and (drain.pending is None or pending < drain.pending):
            drain.progressed_at = self._clock()
        drain.pending = pending if pending is not None else drain.pending
        stalled = self._clock() - drain.progressed_at
        names = ", ".join(leaving)
        if stalled < self._settings.kube_drain_timeout_s:
            raise ResizeInProgress(f"draining {names}: {problem}")
        self._drains.pop(cluster_id, None)
        await self.lift_exclusions(cluster_id, engine, endpoint, credentials)
        raise ResizeAbandoned(f"the drain of {names} made no progress for {stalled:.0f} s "
                              f"(ESS_KUBE_DRAIN_TIMEOUT_S): {problem}; {fix}, then ask again")

    def forget(self, cluster_id: str) -> None:
        self._drains.pop(cluster_id, None)

    async def lift_exclusions(self, cluster_id: str, engine: str, endpoint: str,
                              credentials: EngineCredentials | None) -> None:
        if not self._settings.kube_engines_reachable:
            return  # no drain ever reached the engine, so none left exclusions behind
        search = self._dial(engine, endpoint, credentials)
        try:
            await asyncio.wait_for(search.admin().clear_exclusions(), self._settings.kube_engine_timeout_s)
        except ENGINE_NO_ANSWER as exc:
            # exclusions exist only after a drain reached the engine; without it there are none to lift
            self._log.warning("could not lift node exclusions", cluster=cluster_id, error=str(exc))
        finally:
            await search.close()
