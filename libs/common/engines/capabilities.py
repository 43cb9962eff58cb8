"""What an engine lacks where a driver runs it: the modules missing from the local Elasticsearch
(only its core server is on Maven Central), declared once for the drivers and read by whoever
would use them (the shard controller's reshard copies with `_reindex`)."""

from __future__ import annotations

from enum import StrEnum


class EngineModule(StrEnum):
    PAINLESS = "painless"  # scripts: script queries, scripted updates
    ANALYSIS_COMMON = "analysis-common"  # language analyzers, most token filters
    REINDEX = "reindex"  # _reindex, _update_by_query, _delete_by_query
    MAPPER_EXTRAS = "mapper-extras"  # scaled_float, rank_feature, search_as_you_type, token_count
    REST_ROOT = "rest-root"  # GET / (the local launcher answers it in its place)


# the core server of Elasticsearch 8.15.3 with transport-netty4, as the local driver runs it
CORE_SERVER_LACKS = frozenset(EngineModule)


def copies_by_reindex(lacks: list[str] | frozenset[str]) -> bool:
    """A reshard copies with the engine's `_reindex`; else it pages through with search_after."""
    return EngineModule.REINDEX not in lacks
