"""Engine adapters: one interface over OpenSearch and Elasticsearch 8.

Engine differences (vector mapping, kNN query shape) live only in this package.
"""

from __future__ import annotations

import asyncio

import elastic_transport
import opensearchpy.exceptions
from pydantic import ValidationError

from libs.common.engines.base import (
    ClusterHealth,
    EngineError,
    IndexAlreadyExists,
    IndexNotFound,
    IndexResult,
    SearchEngine,
    SearchHit,
    VectorDocument,
    VectorIndexSpec,
    VectorQuery,
)

# an engine away, slow or refusing: the adapters' own error, and what the clients raise before
# an answer exists (a refused connection, their own timeout), which the adapters do not translate
ENGINE_FAILURES: tuple[type[BaseException], ...] = (
    EngineError, opensearchpy.exceptions.OpenSearchException, elastic_transport.TransportError,
)
# what a caller that waits with its own timeout meets besides: no answer in time, or an answer
# missing a section (an engine still starting, or another process on its port)
ENGINE_NO_ANSWER: tuple[type[BaseException], ...] = (*ENGINE_FAILURES, asyncio.TimeoutError, KeyError, ValidationError)


def connect_engine(kind: str, endpoint: str, username: str | None = None, password: str | None = None) -> SearchEngine:
    """An adapter for the engine `kind` at `endpoint`."""
    if kind == "opensearch":
        from libs.common.engines.opensearch import OpenSearchEngine

        return OpenSearchEngine(endpoint, username, password)
    if kind == "elasticsearch":
        from libs.common.engines.elasticsearch import ElasticsearchEngine

        return ElasticsearchEngine(endpoint, username, password)
    raise ValueError(f"unknown engine {kind!r}")


__all__ = [
    "ClusterHealth",
    "ENGINE_FAILURES",
    "ENGINE_NO_ANSWER",
    "EngineError",
    "IndexAlreadyExists",
    "IndexNotFound",
    "IndexResult",
    "SearchEngine",
    "SearchHit",
    "VectorDocument",
    "VectorIndexSpec",
    "VectorQuery",
    "connect_engine",
]
