"""How the kubernetes driver acts on an engine upgrade's next step (kubernetes_upgrade.py decides
it): the template and partition applied, a wait for green between pods (given up after
`kube_drain_timeout_s` without it), the surge's hand-over drained like a scale-in."""

from __future__ import annotations

import time

from libs.common.models import ClusterRecord, EngineCredentials
from services.manager.drivers import ResizeAbandoned, ResizeInProgress
from services.manager.drivers.kubernetes_engine import EngineCalls
from services.manager.drivers.kubernetes_rules import ROLLING_FROM_ANNOTATION, Manifest, endpoint_of, node_names
from services.manager.drivers.kubernetes_upgrade import RollKind, RollStep, next_roll_step, roll_view
from services.manager.settings import KubernetesDriverSettings


class UpgradeSteps:
    """The upgrade steps of KubernetesDriver, which provides the state and calls below."""

    _settings: KubernetesDriverSettings
    _engines: EngineCalls
    _green_wait: dict[str, float]  # cluster -> since when a step waits for green

    async def _api(self, what: str, call, *args):
        raise NotImplementedError

    def _apply_cluster(self, cluster: ClusterRecord, partition: int = 0, rolling_from: str | None = None) -> None:
        raise NotImplementedError

    def _read_credentials(self, cluster_id: str) -> EngineCredentials | None:
        raise NotImplementedError

    async def _drain(self, cluster: ClusterRecord, leaving: list[str], remaining: int) -> None:
        raise NotImplementedError

    async def _upgrade_step(self, cluster: ClusterRecord, live: Manifest, wanted: int) -> None:
        """Acts on the next step of an upgrade under way, raising ResizeInProgress (or
        ResizeAbandoned); returns when none is: the resize goes on as a plain change of size."""
        engine, version = cluster.spec.engine, cluster.spec.version
        view = roll_view(live, wanted, engine, self._settings)
        step = next_roll_step(view, version)
        if step.kind == RollKind.NONE:
            self._green_wait.pop(cluster.id, None)
            return
        what = f"{engine} {version}"
        rolling_from = live["metadata"].get("annotations", {}).get(ROLLING_FROM_ANNOTATION) or view.template_version
        names = node_names(max(view.replicas, step.replicas))
        match step.kind:
            case RollKind.START:
                await self._apply_step(cluster, step, rolling_from)
                raise ResizeInProgress(f"upgrading to {what} node by node: {names[step.partition]} first")
            case RollKind.SURGE:
                await self._apply_step(cluster, step, rolling_from)
                raise ResizeInProgress(f"upgrading by surge: {names[1]} joining on {what} to take {names[0]}'s shards")
            case RollKind.WAIT:
                raise ResizeInProgress(f"upgrading to {what}: waiting for {names[step.partition]} on its new "
                                       f"version and every pod ready ({view.ready} of {view.replicas})")
        await self._wait_green(cluster, what, names[step.partition])
        if step.kind == RollKind.HAND_OVER:
            await self._drain(cluster, [names[0]], 1)  # ResizeInProgress while its copies move
        await self._apply_step(cluster, step, rolling_from)
        raise ResizeInProgress(f"upgrading to {what}: {names[step.partition]} being replaced")

    async def _apply_step(self, cluster: ClusterRecord, step: RollStep, rolling_from: str) -> None:
        """At partition 0 the annotation goes: the last pod's replacement is watched by the
        StatefulSet's own rollout, and nothing stale is left once it is done."""
        nodes = cluster.model_copy(update={"spec": cluster.spec.model_copy(update={"replicas": step.replicas})})
        await self._api("apply the cluster", self._apply_cluster, nodes, step.partition,
                        rolling_from if step.partition > 0 else None)

    async def _wait_green(self, cluster: ClusterRecord, what: str, next_pod: str) -> None:
        credentials = await self._api("read the credentials", self._read_credentials, cluster.id)
        health = await self._engines.health(cluster.spec.engine, endpoint_of(cluster.id, self._settings), credentials,
                                            0)
        if health.status == "green":
            self._green_wait.pop(cluster.id, None)
            return
        waited = time.monotonic() - self._green_wait.setdefault(cluster.id, time.monotonic())
        seen = health.status or health.note or "no answer"
        if waited > self._settings.kube_drain_timeout_s:
            self._green_wait.pop(cluster.id, None)
            raise ResizeAbandoned(f"upgrading to {what} stalled before {next_pod}: health {seen} for {waited:.0f} s "
                                  "(ESS_KUBE_DRAIN_TIMEOUT_S; a shard copy that only an older node could hold?); "
                                  "the cluster serves as it is; its allocation explain says which copy; any change "
                                  "of the spec tries again")
        raise ResizeInProgress(f"upgrading to {what}: waiting for green health before {next_pod} ({seen})")
