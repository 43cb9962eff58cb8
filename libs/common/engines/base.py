"""The engine-agnostic interface and value types for health and vector search."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from libs.common.metrics import ClusterStats

if TYPE_CHECKING:
    from libs.common.engines.admin import EngineAdmin

Similarity = Literal["cosine", "l2", "dot_product"]
VECTOR_FIELD = "vector"  # the one vector field of a platform vector index


@dataclass(frozen=True)
class ClusterHealth:
    status: str  # green, yellow, red
    nodes: int
    cluster_name: str = ""


@dataclass(frozen=True)
class VectorIndexSpec:
    name: str
    dimensions: int
    similarity: Similarity
    text_fields: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VectorDocument:
    id: str
    vector: list[float]
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorQuery:
    vector: list[float]
    k: int
    filter: dict[str, Any] = field(default_factory=dict)  # field -> exact value


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float
    fields: dict[str, Any]


@dataclass(frozen=True)
class IndexResult:
    indexed: int
    errors: list[dict[str, str]]


class EngineError(Exception):
    """The engine refused or failed a request."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class IndexNotFound(EngineError):
    pass


class IndexAlreadyExists(EngineError):
    pass


class SearchEngine(Protocol):
    async def health(self) -> ClusterHealth: ...
    async def stats(self) -> ClusterStats: ...
    async def create_vector_index(self, spec: VectorIndexSpec) -> None: ...
    async def vector_dimensions(self, index: str) -> int: ...
    async def index_documents(self, index: str, documents: list[VectorDocument]) -> IndexResult: ...
    async def vector_search(self, index: str, query: VectorQuery) -> list[SearchHit]: ...
    async def change_password(self, current: str, new: str) -> None: ...
    def admin(self) -> "EngineAdmin": ...
    async def close(self) -> None: ...


def knn_candidates(k: int) -> int:
    """Neighbours each shard's HNSW search gathers before the best k are kept: more than k keeps
    recall high (a filtered search on few matches missed a true neighbour with k alone)."""
    return max(100, k * 10)


def text_field_mapping(text_fields: list[str]) -> dict[str, Any]:
    # a keyword sub-field, as dynamic mapping would give, so filters can match exact values
    return {
        name: {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
        for name in text_fields
    }


def term_filters(filters: dict[str, Any]) -> list[dict[str, Any]]:
    """Exact-value filters; strings match the keyword sub-field."""
    return [
        {"term": {f"{name}.keyword" if isinstance(value, str) else name: value}}
        for name, value in filters.items()
    ]


def vector_dimensions_in(mapping: dict[str, Any], index: str, size_key: str) -> int:
    """The vector field's size from a `_mapping` answer (`size_key`: the engine's word for it)."""
    # asked through the alias, the answer is keyed by the index (or indices) behind it
    properties = next(iter(mapping.values()))["mappings"].get("properties", {})
    if VECTOR_FIELD not in properties:
        raise IndexNotFound(f"{index} is not a vector index", 404)
    return int(properties[VECTOR_FIELD][size_key])


def bulk_body(index: str, documents: list[VectorDocument]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = []
    for doc in documents:
        body.append({"index": {"_index": index, "_id": doc.id}})
        body.append({**doc.fields, VECTOR_FIELD: doc.vector})
    return body


def bulk_result(response: dict[str, Any]) -> IndexResult:
    errors = []
    indexed = 0
    for item in response.get("items", []):
        action = next(iter(item.values()))
        if "error" in action:
            reason = action["error"].get("reason", str(action["error"]))
            errors.append({"id": str(action.get("_id")), "reason": reason})
        else:
            indexed += 1
    return IndexResult(indexed=indexed, errors=errors)


def search_hits(response: dict[str, Any]) -> list[SearchHit]:
    return [
        SearchHit(id=hit["_id"], score=float(hit["_score"]), fields=hit.get("_source", {}))
        for hit in response["hits"]["hits"]
    ]
