"""The Elasticsearch 8 adapter against a real Elasticsearch 8.15.3 node (the local driver's core
server under our launcher): mappings, bulk with errors, kNN with a filter, the statistics
reporting reads, snapshots, the official client with its product check, and a reshard's copy
without `_reindex`, which this engine lacks.

The node runs in a state directory and port range of its own, away from the session's manager,
which would otherwise take it for an orphan and remove it.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from elasticsearch import Elasticsearch

from libs.common.engines import paged_copy
from libs.common.engines.base import (
    IndexAlreadyExists,
    IndexNotFound,
    SearchHit,
    VectorDocument,
    VectorIndexSpec,
    VectorQuery,
)
from libs.common.engines.elasticsearch import ElasticsearchEngine
from libs.common.models import ClusterRecord, ClusterSpec
from libs.common.settings import ELASTICSEARCH_VERSION, LocalDriverSection
from devrun.engine_setup import install_elasticsearch
from services.manager.drivers.local import LocalDriver
from services.manager.drivers.local_processes import find_engines
from services.manager.planning import EngineSize

CLUSTER_ID = "cadapter"


@pytest.fixture(scope="module")
def node(settings: LocalDriverSection, tmp_path_factory):
    """One Elasticsearch node, green; its endpoint and the snapshot directory it may write."""
    install_elasticsearch(settings.elasticsearch_home, settings.java_bin)
    own = settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("es-adapter"), "local_port_base": 31200})
    driver = LocalDriver(own)
    record = ClusterRecord(id=CLUSTER_ID, tenant_org_id="adapter", user="tests", service_name="adapter",
                           spec=ClusterSpec(replicas=1, cpu="1", memory="1Gi", storage="1Gi",
                                            engine="elasticsearch", version=ELASTICSEARCH_VERSION))
    endpoint = asyncio.run(driver.start(record, EngineSize(nodes=1, heap_mb=384, processors=1)))
    deadline = time.monotonic() + 120
    while asyncio.run(driver.observe(CLUSTER_ID)).health != "green":
        assert time.monotonic() < deadline, (own.clusters_dir / CLUSTER_ID / "engine.log").read_text()[-3000:]
        time.sleep(0.5)
    yield endpoint, own.snapshots_dir / CLUSTER_ID  # under path.repo, outside the engine data
    asyncio.run(driver.remove(CLUSTER_ID))
    assert find_engines(own.clusters_dir) == []


@pytest.fixture
async def engine(node):
    adapter = ElasticsearchEngine(node[0])
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
def client(node):
    with Elasticsearch(node[0]) as es:
        yield es


MOVIES = [
    VectorDocument("godfather", [1.0, 0.0, 0.0], {"title": "The Godfather", "genre": "drama"}),
    VectorDocument("moonlight", [0.8, 0.6, 0.0], {"title": "Moonlight", "genre": "drama"}),
    VectorDocument("airplane", [0.9, 0.1, 0.1], {"title": "Airplane!", "genre": "comedy"}),
    VectorDocument("alien", [0.0, 0.0, 1.0], {"title": "Alien", "genre": "horror"}),
]


async def test_health_of_a_single_node_before_any_index(engine):
    health = await engine.health()
    assert (health.status, health.nodes) == ("green", 1)


async def test_vector_index_is_a_dense_vector_behind_an_alias(engine, client):
    await engine.create_vector_index(VectorIndexSpec("mapped", 3, "l2", ["title"]))

    mapping = client.indices.get_mapping(index="mapped").body
    assert list(mapping) == ["mapped-000001"]
    properties = mapping["mapped-000001"]["mappings"]["properties"]
    assert properties["vector"] == {"type": "dense_vector", "dims": 3, "index": True, "similarity": "l2_norm",
                                    "index_options": {"type": "int8_hnsw", "m": 16, "ef_construction": 100}}
    assert properties["title"]["fields"]["keyword"]["type"] == "keyword"
    assert await engine.vector_dimensions("mapped") == 3
    assert client.indices.get_alias(name="mapped").body == {
        "mapped-000001": {"aliases": {"mapped": {"is_write_index": True}}}}


async def test_existing_and_missing_indices_are_told_apart(engine):
    await engine.create_vector_index(VectorIndexSpec("twice", 3, "cosine"))
    with pytest.raises(IndexAlreadyExists) as exists:
        await engine.create_vector_index(VectorIndexSpec("twice", 3, "cosine"))
    assert exists.value.status == 409
    with pytest.raises(IndexNotFound) as missing:
        await engine.vector_dimensions("never-made")
    assert missing.value.status == 404


async def test_bulk_indexes_what_fits_and_names_what_does_not(engine, client):
    await engine.create_vector_index(VectorIndexSpec("bulk", 3, "cosine", ["title"]))
    result = await engine.index_documents("bulk", [
        VectorDocument("ok", [0.1, 0.2, 0.3], {"title": "fits"}),
        VectorDocument("short", [0.4, 0.5], {"title": "two dimensions"}),
    ])

    assert result.indexed == 1
    [error] = result.errors
    assert error["id"] == "short"
    assert "different number of dimensions [2]" in error["reason"]
    assert client.count(index="bulk").body["count"] == 1


async def test_knn_with_a_filter_finds_the_nearest_of_the_filtered(engine):
    await engine.create_vector_index(VectorIndexSpec("movies", 3, "cosine", ["title"]))
    assert (await engine.index_documents("movies", MOVIES)).errors == []

    nearest = await engine.vector_search("movies", VectorQuery([1.0, 0.05, 0.0], k=2))
    dramas = await engine.vector_search("movies", VectorQuery([0.0, 0.1, 1.0], k=2, filter={"genre": "drama"}))

    assert [hit.id for hit in nearest] == ["godfather", "airplane"]
    assert nearest[0] == SearchHit("godfather", pytest.approx(nearest[0].score),
                                   {"title": "The Godfather", "genre": "drama"})
    assert [hit.id for hit in dramas] == ["moonlight", "godfather"]  # alien is nearer, but horror


async def test_stats_carry_what_reporting_reads(engine):
    await engine.create_vector_index(VectorIndexSpec("counted", 3, "cosine"))
    await engine.index_documents("counted", MOVIES[:3])

    stats = await engine.stats()

    # Elasticsearch's default of one replica has no second node to go to: yellow, as reported
    assert (stats.health, stats.nodes) == ("yellow", 1)
    assert stats.unassigned_shards >= 1 and stats.active_shards >= 1
    assert 0 < stats.heap_used_bytes < stats.heap_max_bytes
    assert 0 < stats.disk_free_bytes <= stats.disk_total_bytes
    counted = next(index for index in stats.per_index if index.name == "counted-000001")
    assert (counted.docs, counted.primaries, counted.replicas) == (3, 1, 1)
    assert counted.indexing_ops >= 3 and counted.store_bytes > 0
    # the node's own load: its engine process's CPU time, on the one processor it was given
    [node] = stats.node_loads
    assert node.cpu_limit == 1.0
    assert node.cpu_time_ms > 0 and node.measured_at_ms > 0
    assert node.search_queue >= 0 and node.search_rejected >= 0 and node.write_rejected >= 0


async def test_an_fs_snapshot_restores_a_deleted_index(engine, client, node):
    await engine.create_vector_index(VectorIndexSpec("kept", 3, "cosine"))
    await engine.index_documents("kept", MOVIES)
    client.snapshot.create_repository(name="backups", repository={"type": "fs", "settings": {"location": str(node[1])}})
    taken = client.snapshot.create(repository="backups", snapshot="first", indices="kept-000001",
                                   wait_for_completion=True).body
    assert taken["snapshot"]["state"] == "SUCCESS"
    client.indices.delete(index="kept-000001")

    client.snapshot.restore(repository="backups", snapshot="first", wait_for_completion=True)

    client.indices.refresh(index="kept-000001")
    assert client.count(index="kept").body["count"] == len(MOVIES)
    assert any(node[1].iterdir())  # the snapshot lives in the cluster's own repository directory


def test_official_client_passes_its_product_check_and_reads_the_root(client):
    info = client.info().body  # elasticsearch-py 8 refuses a server without X-Elastic-Product
    assert info["version"]["number"] == ELASTICSEARCH_VERSION
    assert (info["cluster_name"], info["name"]) == (CLUSTER_ID, "Node 1")
    assert info["tagline"] == "You Know, for Search"
    assert client.ping()


async def test_a_reshard_copy_without_reindex_pages_through_and_keeps_newer_writes(engine, client, monkeypatch):
    monkeypatch.setattr(paged_copy, "PAGE_SIZE", 7)  # several pages and steps out of a few documents
    monkeypatch.setattr(paged_copy, "PAGES_PER_STEP", 2)
    await engine.create_vector_index(VectorIndexSpec("growing", 3, "cosine", ["title"]))
    documents = [VectorDocument(f"d{i}", [1.0, i / 40, 0.0], {"title": f"old {i}"}) for i in range(40)]
    assert (await engine.index_documents("growing", documents)).errors == []
    admin = engine.admin()
    await admin.create_index_like("growing-000001", "growing-000002", primaries=2)
    await admin.move_writes("growing", "growing-000001", "growing-000002")
    # a newer version of d3 written through the alias after the swap: the copy must not undo it
    await engine.index_documents("growing", [VectorDocument("d3", [0.0, 1.0, 0.0], {"title": "new 3"})])

    task, steps, done = await admin.start_copy("growing-000001", "growing-000002", paged=True), 0, False
    while not done:
        done, task = await admin.copy_step(task)
        steps += 1
    await admin.refresh("growing-000002")
    await admin.retire("growing", "growing-000001")

    assert steps == 4  # 40 documents: six pages of 7 or fewer, two a step, then the empty page that ends it
    assert client.count(index="growing").body["count"] == 40
    assert client.get(index="growing-000002", id="d3").body["_source"]["title"] == "new 3"
    assert client.indices.get_settings(index="growing-000002").body["growing-000002"]["settings"]["index"][
        "number_of_shards"] == "2"
