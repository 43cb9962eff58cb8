"""The kubernetes driver's next step of an engine upgrade, decided from the live StatefulSet (a
plain function: the driver acts on it).

Several nodes roll with the StatefulSet's partitioned rolling update: the partition starts at
the highest pod and is stepped down one pod at a time, each step only once every pod is ready
on its revision and the engine is green, so a node's shard copies are back before the next one
goes. One node is upgraded by surge: a second pod joins on the new version (replicas 2,
partition 1), the first hands its shards over and is recreated on it (partition 0), then the
second is drained and removed as in any scale-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from libs.common.settings import KubernetesSection
from services.manager.drivers.kubernetes_rules import ROLLING_FROM_ANNOTATION, Manifest, version_of_image


@dataclass(frozen=True)
class RollView:
    wanted: int  # nodes the record asks for
    replicas: int  # the StatefulSet's
    partition: int
    template_version: str  # what its pod template runs
    updated: int  # pods on the template's revision (status.updatedReplicas)
    ready: int
    current: bool  # the controller has seen the latest spec (status.observedGeneration)


class RollKind(str, Enum):
    NONE = "none"  # no upgrade under way: scale as usual
    START = "start"  # the new version in the template, the partition at the highest pod
    SURGE = "surge"  # one node: a second pod on the new version beside it
    WAIT = "wait"  # a pod is being replaced or is not ready yet
    STEP = "step"  # once green: the partition one pod lower
    HAND_OVER = "hand_over"  # once green: drain the old pod 0 onto the surge pod, then replace it


@dataclass(frozen=True)
class RollStep:
    kind: RollKind
    partition: int = 0  # the partition to apply
    replicas: int = 0  # the replicas to apply with it


def next_roll_step(view: RollView, version: str) -> RollStep:
    if view.template_version != version:
        if view.replicas == 1 and view.wanted == 1:
            return RollStep(RollKind.SURGE, partition=1, replicas=2)
        return RollStep(RollKind.START, partition=view.replicas - 1, replicas=view.replicas)
    settled = view.current and view.updated >= view.replicas - view.partition and view.ready >= view.replicas
    if view.partition > 0:
        if not settled:
            return RollStep(RollKind.WAIT, view.partition, view.replicas)
        if view.wanted == 1 and view.replicas == 2 and view.partition == 1:
            return RollStep(RollKind.HAND_OVER, partition=0, replicas=2)
        return RollStep(RollKind.STEP, partition=view.partition - 1, replicas=view.replicas)
    if view.updated < view.replicas and view.replicas > view.wanted:
        return RollStep(RollKind.WAIT, 0, view.replicas)  # the surge's old pod still being replaced
    return RollStep(RollKind.NONE)


def template_version(statefulset: Manifest, engine: str, settings: KubernetesSection) -> str:
    image = statefulset["spec"]["template"]["spec"]["containers"][0]["image"]
    return version_of_image(engine, image, settings)


def roll_view(statefulset: Manifest, wanted: int, engine: str, settings: KubernetesSection) -> RollView:
    spec, status = statefulset.get("spec", {}), statefulset.get("status", {})
    return RollView(
        wanted=wanted, replicas=int(spec.get("replicas", 1)),
        partition=int(spec.get("updateStrategy", {}).get("rollingUpdate", {}).get("partition", 0)),
        template_version=template_version(statefulset, engine, settings),
        updated=int(status.get("updatedReplicas", 0)), ready=int(status.get("readyReplicas", 0)),
        current=status.get("observedGeneration", 0) >= statefulset["metadata"].get("generation", 0),
    )


def pod_versions(statefulset: Manifest, engine: str, settings: KubernetesSection) -> tuple[str, ...]:
    """Each pod's version: those on the template's revision run its version, the others the one
    the upgrade started from (its annotation; the template's when none is under way)."""
    new = template_version(statefulset, engine, settings)
    old = statefulset["metadata"].get("annotations", {}).get(ROLLING_FROM_ANNOTATION, new)
    replicas, status = int(statefulset.get("spec", {}).get("replicas", 1)), statefulset.get("status", {})
    updated = min(replicas, int(status.get("updatedReplicas", replicas)))
    if status.get("observedGeneration", 0) < statefulset["metadata"].get("generation", 0):
        updated = 0 if old != new else updated  # the controller has not seen the new template yet
    return (new,) * updated + (old,) * (replicas - updated)
