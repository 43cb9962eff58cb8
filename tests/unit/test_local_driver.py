"""The local driver's pure parts: recognising our engine nodes, their size, and when a drain is done."""

from pathlib import Path

import pytest
import yaml

from libs.common.engines.admin import pending_drain
from services.manager.drivers.local import MIXED, size_of
from services.manager.drivers.local_launch import write_node_config
from services.manager.drivers.local_processes import NodeProcess, parse_engine_cmdline
from services.manager.drivers.local_steps import NodeState, NodeStep, StallClock, StepKind, next_node_step
from services.manager.planning import EngineSize

CLUSTERS = Path("/state/clusters")


def cmdline(base: str, node: int = 3) -> list[str]:
    return ["java", "-Xms512m", "-Xmx512m", "-XX:ActiveProcessorCount=2", "-cp", "x", "EngineLauncher",
            "-basePath", base, "-nodeIndex", str(node), "-baseHttpPort", "19220", "-clusterName", "c1"]


def test_our_engine_node_is_recognised_with_its_size():
    node = parse_engine_cmdline(cmdline("/state/clusters/c1/nodes"), CLUSTERS)
    assert (node.cluster_id, node.node, node.heap_mb, node.processors) == ("c1", 3, 512, 2)
    assert node.http_base == 19220


def test_engines_of_another_state_dir_or_other_programs_are_not_ours():
    assert parse_engine_cmdline(cmdline("/elsewhere/clusters/c1/nodes"), CLUSTERS) is None
    assert parse_engine_cmdline(["python", "-m", "services.manager"], CLUSTERS) is None


def node(n: int, heap: int = 512) -> NodeProcess:
    return NodeProcess(pid=100 + n, cluster_id="c1", node=n, heap_mb=heap, processors=1, http_base=19220)


def test_size_counts_members_and_shows_a_rolling_restart_as_mixed():
    assert size_of([node(1), node(2)], members=3) == EngineSize(3, 512, 1)
    assert size_of([node(1), node(2, heap=256)], members=2) == EngineSize(2, MIXED, MIXED)


def test_only_node_one_of_a_new_cluster_bootstraps(tmp_path):
    write_node_config(tmp_path, 1, "127.0.0.1", 19220, bootstrap=True, repos=[])
    write_node_config(tmp_path, 2, "127.0.0.1", 19220, bootstrap=False, repos=[])
    first = (tmp_path / "node_1" / "config" / "opensearch.yml").read_text()
    second = (tmp_path / "node_2" / "config" / "opensearch.yml").read_text()
    assert 'cluster.initial_cluster_manager_nodes: ["Node 1"]' in first
    assert "initial_cluster_manager_nodes" not in second
    assert "transport.port: 19232" in second and '"127.0.0.1:19231"' in second


def shard(index, number, state, node, prirep="p"):
    return {"index": index, "shard": str(number), "prirep": prirep, "state": state, "node": node}


def test_drain_waits_while_a_shard_lives_only_on_a_leaving_node():
    rows = [shard("a", 0, "STARTED", "Node 2"), shard("a", 0, "UNASSIGNED", None, "r")]
    assert pending_drain(rows, ["Node 2"], remaining_nodes=1) == 1


def test_drain_is_done_when_a_started_copy_stays():
    rows = [shard("a", 0, "STARTED", "Node 2"), shard("a", 0, "STARTED", "Node 1", "r"),
            shard("b", 0, "STARTED", "Node 1")]
    assert pending_drain(rows, ["Node 2"], remaining_nodes=1) == 0


def test_a_replica_that_fits_on_the_remaining_nodes_must_move_first():
    rows = [shard("a", 0, "STARTED", "Node 1"), shard("a", 0, "STARTED", "Node 3", "r")]
    assert pending_drain(rows, ["Node 3"], remaining_nodes=2) == 1
    rows[1] = shard("a", 0, "STARTED", "Node 2", "r")
    assert pending_drain(rows, ["Node 3"], remaining_nodes=2) == 0


def test_unassigned_copies_that_fit_keep_the_drain_going():
    rows = [shard("a", 0, "STARTED", "Node 1"), shard("a", 0, "UNASSIGNED", None, "r")]
    assert pending_drain(rows, ["Node 3"], remaining_nodes=2) == 1


def test_relocating_shards_keep_the_drain_going():
    rows = [shard("a", 0, "RELOCATING", "Node 2 -> Node 1"), shard("a", 0, "STARTED", "Node 1", "r")]
    assert pending_drain(rows, ["Node 2"], remaining_nodes=1) == 1


def test_a_cluster_that_formed_is_never_started_empty(tmp_path):
    from datetime import datetime, timezone

    import pytest

    from libs.common.models import ClusterRecord, ClusterSpec
    from libs.common.settings import LocalDriverSection
    from services.manager.drivers import DataGone
    from services.manager.drivers.local import LocalDriver

    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / ".complete").write_text("recipe")
    driver = LocalDriver(LocalDriverSection(state_dir=tmp_path / "state", engine_home=tmp_path / "engine"))
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", version="2.19.1")
    formed = ClusterRecord(id="c1", tenant_org_id="acme", user="a", service_name="s", spec=spec,
                           formed_at=datetime.now(timezone.utc))
    with pytest.raises(DataGone, match="data of cluster c1 is gone"):
        driver._start_node(formed, 1, driver.size_for(spec))
    assert not (tmp_path / "state" / "clusters" / "c1" / "nodes" / "node_1" / "config").exists()


def test_an_elasticsearch_node_is_recognised_as_one(tmp_path):
    from services.manager.drivers.local_elasticsearch import elasticsearch_command
    args = elasticsearch_command("java", "cp", "c1", 2, EngineSize(2, 384, 1), Path("/state/clusters/c1/nodes"), 19220)
    node = parse_engine_cmdline(args, CLUSTERS)
    assert (node.engine, node.cluster_id, node.node, node.heap_mb, node.http_base) == ("elasticsearch", "c1", 2, 384,
                                                                                      19220)
    assert parse_engine_cmdline(cmdline("/state/clusters/c1/nodes"), CLUSTERS).engine == "opensearch"


def test_elasticsearch_nodes_find_each_other_and_only_node_one_bootstraps(tmp_path):
    from services.manager.drivers.local_elasticsearch import write_elasticsearch_config
    ports = [19231, 19232]
    write_elasticsearch_config(tmp_path / "nodes", 1, "127.0.0.1", 19220, ports, "c1", bootstrap=True, repos=[])
    write_elasticsearch_config(tmp_path / "nodes", 2, "127.0.0.1", 19220, ports, "c1", bootstrap=False, repos=[])
    first = (tmp_path / "nodes" / "node_1" / "config" / "elasticsearch.yml").read_text()
    second = (tmp_path / "nodes" / "node_2" / "config" / "elasticsearch.yml").read_text()
    assert 'cluster.initial_master_nodes: ["Node 1"]' in first and "initial_master_nodes" not in second
    assert "discovery.type" not in first  # single-node discovery would refuse a second node
    assert 'node.name: "Node 2"' in second and "http.port: 19222" in second and "transport.port: 19232" in second


def path_repo(config: Path) -> list[Path]:
    [line] = [line for line in config.read_text().splitlines() if line.startswith("path.repo:")]
    return [Path(p) for p in yaml.safe_load(line)["path.repo"]]


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_a_node_may_hold_repositories_only_in_its_own_clusters_directories(tmp_path, monkeypatch, engine):
    """An `fs` repository must lie under `path.repo`: a tenant may not register one at another
    cluster's snapshots, so the shared snapshots directory is not in it, only this cluster's."""
    from types import SimpleNamespace

    from libs.common.models import ClusterRecord, ClusterSpec
    from libs.common.settings import LocalDriverSection
    from services.manager.drivers import local

    settings = LocalDriverSection(state_dir=tmp_path / "state", engine_home=tmp_path / "os",
                                  elasticsearch_home=tmp_path / "es")
    for home in (settings.engine_home, settings.elasticsearch_home):
        home.mkdir()
        (home / ".complete").write_text("recipe")
    monkeypatch.setattr(local.subprocess, "Popen", lambda *args, **kwargs: SimpleNamespace(pid=1, poll=lambda: None))
    driver = local.LocalDriver(settings)
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", engine=engine,
                       version="8.15.3" if engine == "elasticsearch" else "2.19.1")
    record = ClusterRecord(id="c1", tenant_org_id="acme", user="a", service_name="s", spec=spec)
    driver._start_node(record, 1, driver.size_for(spec))

    name = "elasticsearch.yml" if engine == "elasticsearch" else "opensearch.yml"
    repos = path_repo(settings.clusters_dir / "c1" / "nodes" / "node_1" / "config" / name)
    assert repos == [settings.snapshots_dir / "c1", settings.restores_dir / "c1"]
    assert all(repo.is_dir() for repo in repos)  # made before the node starts
    assert settings.snapshots_dir not in repos and settings.restores_dir not in repos
    others = (settings.snapshots_dir / "c2", settings.restores_dir / "c2")
    assert not any(repo.is_relative_to(other) or other.is_relative_to(repo) for repo in repos for other in others)


def test_cold_starts_take_turns_and_a_node_answering_lets_the_next_one_go(tmp_path, monkeypatch):
    """20 wakes at once on two cores: each cold JVM would take as long as all of them together."""
    import os
    import socket
    from types import SimpleNamespace

    from libs.common.models import ClusterRecord, ClusterSpec
    from libs.common.settings import LocalDriverSection
    from services.manager.drivers import local

    settings = LocalDriverSection(state_dir=tmp_path / "state", engine_home=tmp_path / "os", local_port_base=36200,
                                  local_concurrent_starts=1, warm_engines=0)
    settings.engine_home.mkdir()
    (settings.engine_home / ".complete").write_text("recipe")
    # the "JVM" is this test's own process: alive for as long as the test runs
    monkeypatch.setattr(local.subprocess, "Popen", lambda *a, **k: SimpleNamespace(pid=os.getpid(), poll=lambda: None))
    driver = local.LocalDriver(settings)
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", version="2.19.1")
    first, second = (ClusterRecord(id=c, tenant_org_id="acme", user="a", service_name=c, spec=spec) for c in "ab")
    size = driver.size_for(spec)
    assert driver.start_queued(first, size) is None
    driver._start_node(first, 1, size)
    assert "1 engines are starting" in driver.start_queued(second, size)
    with socket.socket() as engine:  # the first node's HTTP port answers: it is started
        engine.bind(("127.0.0.1", driver._http_base(first.id) + 1))  # its slot: the first free one
        engine.listen()
        assert driver.start_queued(second, size) is None


def test_cold_start_turns_are_held_from_the_grant_and_given_in_the_order_asked():
    """20 wakes at once once started 16 JVMs together: each reconcile was let in between its
    check and its spawn, and every waiting one went when the first node answered."""
    from services.manager.drivers.local_starts import FORGET_S, GRANT_S, StartTurns

    now = [0.0]
    answering: set[int] = set()
    turns = StartTurns(2, lambda port: port in answering, lambda pid: True, clock=lambda: now[0])
    assert turns.ask("a") is None and turns.ask("b") is None  # granted, no JVM spawned yet
    assert [turns.ask(c) for c in "cdef"] == [2, 2, 2, 2]  # the grants hold the turns
    assert turns.ask("a") is None  # asked again before its spawn: the same turn, not a third
    turns.spawned("a", 101, 9201)
    turns.spawned("b", 102, 9221)
    now[0] += 1
    assert turns.ask("f") == 2 and turns.ask("e") == 2
    answering.add(9201)  # a's node answers: one turn, for the longest waiting (c), not all four
    assert turns.ask("f") == 1 and turns.ask("e") == 1 and turns.ask("d") == 1
    assert turns.ask("c") is None
    assert turns.ask("d") == 2
    now[0] += FORGET_S + 1  # c never spawned (its start failed) and d, e, f stopped asking
    assert turns.ask("g") == 2  # c's grant still holds its turn
    now[0] += GRANT_S
    answering.add(9221)
    assert turns.ask("g") is None and turns.ask("h") is None  # both turns free, the line forgotten
    turns.served_warm("g")  # its node went to a standby: the turn goes back at once
    assert turns.ask("i") is None and turns.ask("j") == 2


def test_looks_at_many_clusters_share_one_process_scan_and_the_drivers_own_start_voids_it(tmp_path, monkeypatch):
    """200 sleeping clusters, each looked at every pass, were 100 /proc scans a second."""
    import asyncio
    import os
    from types import SimpleNamespace

    from libs.common.models import ClusterRecord, ClusterSpec
    from libs.common.settings import LocalDriverSection
    from services.manager.drivers import local

    scans = []
    monkeypatch.setattr(local, "find_engines", lambda clusters: scans.append(clusters) or [])
    monkeypatch.setattr(local.subprocess, "Popen", lambda *a, **k: SimpleNamespace(pid=os.getpid(), poll=lambda: None))
    settings = LocalDriverSection(state_dir=tmp_path / "state", engine_home=tmp_path / "os", local_port_base=36400,
                                  warm_engines=0)
    settings.engine_home.mkdir()
    (settings.engine_home / ".complete").write_text("recipe")
    driver = local.LocalDriver(settings)

    async def look_at_all() -> None:
        for n in range(50):
            assert not (await driver.observe(f"c{n:012x}")).running

    asyncio.run(look_at_all())
    assert len(scans) == 1
    driver._running("c000000000001")  # an action's look is never an old scan
    assert len(scans) == 2
    spec = ClusterSpec(replicas=1, cpu="500m", memory="512Mi", storage="5Gi", version="2.19.1")
    driver._start_node(ClusterRecord(id="c000000000002", tenant_org_id="acme", user="a", service_name="s", spec=spec),
                       1, driver.size_for(spec))
    asyncio.run(driver.observe("c000000000002"))  # its own start: looked at afresh
    assert len(scans) == 3


def test_a_running_nodes_version_is_its_engine_homes_as_found_on_the_machine(tmp_path, monkeypatch):
    """The version a node runs is read from its command line's classpath, through the /proc scan
    (which once dropped it: every 3.5.0 node then looked like a 2.19.1 one and was restarted again)."""
    from libs.common.settings import LocalDriverSection
    from services.manager.drivers import local, local_processes

    settings = LocalDriverSection(state_dir=tmp_path / "state", engine_home=tmp_path / "os2",
                                  engine3_home=tmp_path / "os3", warm_engines=0)
    base = str(settings.clusters_dir / "c1" / "nodes")
    two = [*cmdline(base, 1)]
    two[two.index("-cp") + 1] = f"{settings.engine_home}/launcher.jar:{settings.engine_home}/lib/*"
    three = [*cmdline(base, 2)]
    three[0] = "/usr/lib/jvm/jdk-25/bin/java"
    three[three.index("-cp") + 1] = f"{settings.engine3_home}/launcher.jar:{settings.engine3_home}/lib/*"
    monkeypatch.setattr(local_processes, "_live_processes", lambda: iter([(101, two), (102, three)]))
    driver = local.LocalDriver(settings)
    running = driver._running("c1")
    assert {n: (running[n].pid, driver._version_of(running[n])) for n in running} == {1: (101, "2.19.1"),
                                                                                       2: (102, "3.5.0")}


def test_the_next_node_step_adds_drains_restarts_and_upgrades_one_node_by_surge():
    fits, old, other_heap = NodeState(True), NodeState(False), NodeState(False)
    cases = [
        ({1}, {1: fits}, 3, NodeStep(StepKind.ADD, (2,))),
        ({1, 2, 3}, {1: fits, 2: fits, 3: fits}, 1, NodeStep(StepKind.DRAIN, (2, 3))),
        ({1, 2, 3}, {1: old, 2: old, 3: fits}, 3, NodeStep(StepKind.RESTART, (2,))),  # the highest first
        ({1, 2}, {1: old, 2: fits}, 2, NodeStep(StepKind.RESTART, (1,))),  # node 1 last
        ({1}, {1: other_heap}, 1, NodeStep(StepKind.SURGE, (2,))),  # a new heap too: never restarted in place
        ({1, 2}, {1: other_heap, 2: fits}, 1, NodeStep(StepKind.HAND_OVER, (1,))),
        # one node on another version: a second joins on the new one, node 1 hands over, node 2 leaves
        ({1}, {1: old}, 1, NodeStep(StepKind.SURGE, (2,))),
        ({1, 2}, {1: old, 2: fits}, 1, NodeStep(StepKind.HAND_OVER, (1,))),
        ({1, 2}, {1: fits, 2: fits}, 1, NodeStep(StepKind.DRAIN, (2,))),
        ({1, 2}, {1: old, 2: old}, 1, NodeStep(StepKind.DRAIN, (2,))),  # a shrink, then the surge
        ({1, 2}, {1: fits, 2: fits}, 2, NodeStep(StepKind.NONE)),
    ]
    for members, running, wanted, expected in cases:
        assert next_node_step(members, running, wanted) == expected, (members, running, wanted)


def test_a_step_is_stalled_only_while_nothing_moves():
    clock = StallClock()
    assert clock.waited("c", 5, now=0.0) == 0.0
    assert clock.waited("c", 5, now=40.0) == 40.0
    assert clock.waited("c", 3, now=50.0) == 0.0  # progress: the clock starts again
    assert clock.waited("c", 4, now=80.0) == 30.0  # more again (a node left) is no progress
    clock.done("c")
    assert clock.waited("c", 4, now=90.0) == 0.0


def test_the_opensearch_a_new_cluster_gets_is_a_setting_of_the_installed_ones(tmp_path):
    from pydantic import ValidationError

    from libs.common.settings import LocalDriverSection
    from services.manager.drivers.local import LocalDriver

    homes = {"engine_home": tmp_path / "2", "engine3_home": tmp_path / "3", "elasticsearch819_home": tmp_path / "8"}
    settings = LocalDriverSection(state_dir=tmp_path / "state", **homes)
    three = settings.model_copy(update={"local_opensearch_version": "3.5.0"})
    assert LocalDriver(three).engine_versions["opensearch"] == ["2.19.1"]  # no Java 21 here: 3.5.0 not installed
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / ".complete").write_text("recipe")
    assert LocalDriver(settings).engine_versions["opensearch"] == ["2.19.1", "3.5.0"]
    assert LocalDriver(three).engine_versions["opensearch"] == ["3.5.0", "2.19.1"]  # the default first
    with pytest.raises(ValidationError, match="ESS_LOCAL_OPENSEARCH_VERSION '2.18.0': use 2.19.1 or 3.5.0"):
        LocalDriverSection(local_opensearch_version="2.18.0")
