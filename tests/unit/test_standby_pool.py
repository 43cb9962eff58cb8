"""Warm engines' pure parts: which standby a node may take, what the pool starts and retires,
and how a standby's command line and assignment read back as the node it runs."""

from pathlib import Path

from services.manager.drivers.local_processes import StandbyProcess, parse_engine_cmdline
from services.manager.drivers.local_standby import pick_standby, plan_refill
from services.manager.planning import EngineSize

CLUSTERS = Path("/state/clusters")
WARM = EngineSize(nodes=1, heap_mb=512, processors=1)


def standby(pid: int, engine: str = "opensearch", heap: int = 512, processors: int = 1, assigned: bool = False,
            ready: bool = True) -> StandbyProcess:
    return StandbyProcess(pid, engine, heap, processors, Path(f"/state/standby/s{pid}"), assigned, ready)


def test_a_node_takes_only_an_idle_standby_of_its_engine_and_exact_size():
    pool = [standby(1, heap=256), standby(2, engine="elasticsearch"), standby(3, processors=2),
            standby(4, assigned=True)]
    assert pick_standby(pool, "opensearch", WARM) is None  # a heap is fixed when its JVM starts
    assert pick_standby([*pool, standby(5)], "opensearch", WARM).pid == 5
    assert pick_standby(pool, "elasticsearch", WARM).pid == 2


def test_a_warmed_up_standby_is_taken_before_one_still_warming():
    assert pick_standby([standby(1, ready=False), standby(2)], "opensearch", WARM).pid == 2
    assert pick_standby([standby(1, ready=False)], "opensearch", WARM).pid == 1  # still faster than cold


def test_the_pool_starts_what_each_class_lacks_and_counts_no_assigned_one():
    classes = [("opensearch", 512, 1), ("elasticsearch", 512, 1)]
    start, retire = plan_refill([standby(1, assigned=True), standby(2, engine="elasticsearch")], classes, 1)
    assert start == [("opensearch", 512, 1)] and retire == []
    assert plan_refill([], classes, 2) == (classes[:1] * 2 + classes[1:] * 2, [])


def test_the_pool_retires_standbys_beyond_its_size_or_of_a_class_no_longer_kept():
    classes = [("opensearch", 512, 1)]
    start, retire = plan_refill([standby(1), standby(2, ready=False), standby(3, heap=256)], classes, 1)
    assert start == [] and sorted(s.pid for s in retire) == [2, 3]
    assert sorted(s.pid for s in plan_refill([standby(1), standby(4, assigned=True)], classes, 0)[1]) == [1]


def standby_cmdline(directory: Path) -> list[str]:
    return ["java", "-Xms512m", "-Xmx512m", "-XX:ActiveProcessorCount=1", "-cp", "x", "EngineLauncher",
            "-standby", str(directory)]


def test_an_idle_standby_is_no_node_and_an_assigned_one_is_the_node_its_assignment_names(tmp_path):
    directory = tmp_path / "standby" / "s1"
    directory.mkdir(parents=True)
    clusters = tmp_path / "clusters"
    assert parse_engine_cmdline(standby_cmdline(directory), clusters) is None
    (directory / "assignment").write_text("\n".join([
        "-basePath", str(clusters / "c9" / "nodes"), "-nodeIndex", "1", "-baseHttpPort", "19240",
        "-clusterName", "c9", "-pluginTypes", "x", "-logFile", str(clusters / "c9" / "engine.log")]) + "\n")
    node = parse_engine_cmdline(standby_cmdline(directory), clusters)
    assert (node.cluster_id, node.node, node.heap_mb, node.http_base, node.engine) == ("c9", 1, 512, 19240,
                                                                                       "opensearch")
    assert parse_engine_cmdline(standby_cmdline(directory), CLUSTERS) is None  # another state dir's
