"""Both engine adapters lift a drain (shard allocation and voting exclusions) so that nodes
that come back after a shrink hold shards and vote again; kmock serves the engine's HTTP API."""

import kmock
import pytest

from libs.common.engines import connect_engine

# the Elasticsearch 8 client refuses answers without its product header
ANSWER_HEADERS = kmock.headers({"X-Elastic-Product": "Elasticsearch", "Content-Type": "application/json"})


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
async def test_lifting_exclusions_clears_the_allocation_filter_and_the_voting_exclusions(engine):
    async with kmock.RawHandler() as server, kmock.Server(server):
        server["put /_cluster/settings"] << ANSWER_HEADERS << {"acknowledged": True}
        server["delete /_cluster/voting_config_exclusions"] << ANSWER_HEADERS << {}
        search = connect_engine(engine, str(server.url).rstrip("/"), "admin", "secret")
        try:
            await search.admin().clear_exclusions()
        finally:
            await search.close()
        settings, voting = list(server)
    assert (settings.method.value, settings.url.path) == ("PUT", "/_cluster/settings")
    assert settings.data == {"transient": {"cluster.routing.allocation.exclude._name": None}}
    assert (voting.method.value, voting.url.path) == ("DELETE", "/_cluster/voting_config_exclusions")
    # not waiting: the excluded nodes are long gone, there is nothing to wait for
    assert voting.params == {"wait_for_removal": "false"}
