"""The local driver's pure parts: recognising our engines, and when a drain is done."""

from pathlib import Path

from libs.common.engines.admin import count_shards_only_on
from services.manager.drivers.local import parse_engine_cmdline
from services.manager.planning import EngineSize

CLUSTERS = Path("/state/clusters")


def cmdline(base: str) -> list[str]:
    return ["java", "-Xms512m", "-Xmx512m", "-XX:ActiveProcessorCount=2", "-cp", "x", "EngineLauncher",
            "-basePath", base, "-numOfNode", "3", "-baseHttpPort", "19220", "-clusterName", "c1"]


def test_our_engine_is_recognised_with_its_size():
    engine = parse_engine_cmdline(cmdline("/state/clusters/c1/nodes"), CLUSTERS)
    assert engine.cluster_id == "c1"
    assert engine.size == EngineSize(nodes=3, heap_mb=512, processors=2)
    assert engine.http_base == 19220


def test_engines_of_another_state_dir_or_other_programs_are_not_ours():
    assert parse_engine_cmdline(cmdline("/elsewhere/clusters/c1/nodes"), CLUSTERS) is None
    assert parse_engine_cmdline(["python", "-m", "services.manager"], CLUSTERS) is None


def shard(index, number, state, node):
    return {"index": index, "shard": str(number), "prirep": "p", "state": state, "node": node}


def test_drain_waits_while_a_shard_lives_only_on_a_leaving_node():
    rows = [shard("a", 0, "STARTED", "Node 2"), shard("a", 0, "UNASSIGNED", None)]
    assert count_shards_only_on(rows, ["Node 2"]) == 1


def test_drain_is_done_when_a_started_copy_stays():
    rows = [shard("a", 0, "STARTED", "Node 2"), shard("a", 0, "STARTED", "Node 1"),
            shard("b", 0, "STARTED", "Node 1")]
    assert count_shards_only_on(rows, ["Node 2"]) == 0


def test_relocating_shards_keep_the_drain_going():
    rows = [shard("a", 0, "RELOCATING", "Node 1"), shard("a", 0, "STARTED", "Node 1")]
    assert count_shards_only_on(rows, ["Node 2"]) == 1
