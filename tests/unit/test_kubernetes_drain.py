"""How long the kubernetes driver lets a drain go on: as long as it progresses, and no longer
than ESS_KUBE_DRAIN_TIMEOUT_S without progress; on a clock the test moves."""

from __future__ import annotations

import pytest

from libs.common.settings import KubernetesSection
from services.manager.drivers import ResizeAbandoned, ResizeInProgress
from services.manager.drivers.kubernetes_engine import EngineCalls


class Engine:
    def __init__(self):
        self.pending, self.lifted = 5, 0

    def connect(self, *args) -> "Engine":
        return self

    def admin(self) -> "Engine":
        return self

    async def exclude_nodes(self, names) -> None:
        pass

    async def drain_pending(self, names, remaining) -> int:
        return self.pending

    async def clear_exclusions(self) -> None:
        self.lifted += 1

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts():
    engine, clock = Engine(), Clock()
    calls = EngineCalls(KubernetesSection(kube_drain_timeout_s=60), engine.connect, clock)
    return engine, clock, calls


async def drain(calls: EngineCalls) -> None:
    await calls.drain("c1", "elasticsearch", "http://engine:9200", None, ["engine-2"], 2)


async def test_a_drain_that_progresses_goes_on_however_long_it_takes(parts):
    engine, clock, calls = parts
    for pending in (5, 4, 3, 2, 1):
        engine.pending = pending
        with pytest.raises(ResizeInProgress, match=f"draining engine-2: {pending} shard copies still to move"):
            await drain(calls)
        clock.now += 50  # each step under the timeout, all of them far over it
    engine.pending = 0
    await drain(calls)  # done: the nodes may go


async def test_a_drain_without_progress_is_given_up_and_its_exclusions_lifted(parts):
    engine, clock, calls = parts
    with pytest.raises(ResizeInProgress):
        await drain(calls)
    assert engine.lifted == 1  # as it began: exclusions another drain left go first
    clock.now += 59
    with pytest.raises(ResizeInProgress):
        await drain(calls)
    clock.now += 2
    with pytest.raises(ResizeAbandoned, match=r"the drain of engine-2 made no progress for 61 s .*5 shard copies "
                                              r"still to move; GET http://engine:9200/_cluster/allocation/explain"):
        await drain(calls)
    assert engine.lifted == 2

    clock.now += 1  # asked again later: a new drain with a new allowance
    with pytest.raises(ResizeInProgress):
        await drain(calls)
