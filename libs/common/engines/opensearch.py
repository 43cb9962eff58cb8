"""OpenSearch adapter (opensearch-py): k-NN plugin `knn_vector` with the pure-Java lucene engine."""

from __future__ import annotations

from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from libs.common.engines.admin import EngineAdmin, generation_name
from libs.common.metrics import (
    NODE_INFO_FIELDS,
    NODE_STATS_FIELDS,
    NODE_STATS_METRICS,
    ClusterStats,
    parse_cluster_stats,
)
from libs.common.engines.base import (
    VECTOR_FIELD,
    ClusterHealth,
    EngineError,
    IndexAlreadyExists,
    IndexNotFound,
    IndexResult,
    SearchHit,
    VectorDocument,
    VectorIndexSpec,
    VectorQuery,
    bulk_body,
    bulk_result,
    knn_candidates,
    search_hits,
    term_filters,
    text_field_mapping,
    vector_dimensions_in,
)

SPACE_TYPES = {"cosine": "cosinesimil", "l2": "l2", "dot_product": "innerproduct"}


def _engine_error(exc: TransportError) -> EngineError:
    status = exc.status_code if isinstance(exc.status_code, int) else None
    error = getattr(exc, "error", "")
    if isinstance(exc, NotFoundError):
        return IndexNotFound(str(error), 404)
    if error == "resource_already_exists_exception":
        return IndexAlreadyExists(str(error), 409)
    return EngineError(f"{error}: {getattr(exc, 'info', '')}", status)


class OpenSearchEngine:
    def __init__(self, endpoint: str, username: str | None = None, password: str | None = None):
        auth = (username, password) if username else None
        self._client = AsyncOpenSearch(hosts=[endpoint], http_auth=auth, timeout=30)

    async def health(self) -> ClusterHealth:
        try:
            body = await self._client.cluster.health()
        except TransportError as exc:
            raise _engine_error(exc) from exc
        return ClusterHealth(status=body["status"], nodes=body["number_of_nodes"], cluster_name=body.get("cluster_name", ""))

    async def stats(self) -> ClusterStats:
        try:
            health = await self._client.cluster.health(level="indices")
            nodes = await self._client.nodes.stats(metric=NODE_STATS_METRICS,
                                                   filter_path=NODE_STATS_FIELDS)
            indices = await self._client.indices.stats(metric="docs,store,indexing,search")
            info = await self._client.nodes.info(metric="os", filter_path=NODE_INFO_FIELDS)
        except TransportError as exc:
            raise _engine_error(exc) from exc
        return parse_cluster_stats(health, nodes, indices, info)

    async def create_vector_index(self, spec: VectorIndexSpec) -> None:
        properties: dict[str, Any] = {
            VECTOR_FIELD: {
                "type": "knn_vector",
                "dimension": spec.dimensions,
                "method": {"name": "hnsw", "engine": "lucene", "space_type": SPACE_TYPES[spec.similarity]},
            },
            **text_field_mapping(spec.text_fields),
        }
        body = {"settings": {"index": {"knn": True}}, "mappings": {"properties": properties},
                "aliases": {spec.name: {"is_write_index": True}}}
        try:
            # readers and writers use the alias, so a reshard can swap the index beneath it
            await self._client.indices.create(index=generation_name(spec.name, 1), body=body)
        except (RequestError, TransportError) as exc:
            raise _engine_error(exc) from exc

    async def vector_dimensions(self, index: str) -> int:
        try:
            mapping = await self._client.indices.get_mapping(index=index)
        except TransportError as exc:
            raise _engine_error(exc) from exc
        return vector_dimensions_in(mapping, index, "dimension")

    async def index_documents(self, index: str, documents: list[VectorDocument]) -> IndexResult:
        try:
            response = await self._client.bulk(body=bulk_body(index, documents), refresh="wait_for")
        except TransportError as exc:
            raise _engine_error(exc) from exc
        return bulk_result(response)

    async def vector_search(self, index: str, query: VectorQuery) -> list[SearchHit]:
        # the lucene engine's `k` is the candidates gathered per segment; `size` keeps the best k
        knn: dict[str, Any] = {"vector": query.vector, "k": knn_candidates(query.k)}
        if query.filter:
            knn["filter"] = {"bool": {"filter": term_filters(query.filter)}}
        body = {
            "size": query.k,
            "_source": {"excludes": [VECTOR_FIELD]},
            "query": {"knn": {VECTOR_FIELD: knn}},
        }
        try:
            response = await self._client.search(index=index, body=body)
        except TransportError as exc:
            raise _engine_error(exc) from exc
        return search_hits(response)

    async def _request(self, method: str, path: str, body):
        try:
            return await self._client.transport.perform_request(method, path, body=body)
        except TransportError as exc:
            raise _engine_error(exc) from exc

    async def change_password(self, current: str, new: str) -> None:
        """The connected user's password, through the security plugin's account API."""
        await self._request("PUT", "/_plugins/_security/api/account",
                            {"current_password": current, "password": new})

    def admin(self) -> EngineAdmin:
        return EngineAdmin(self._request)

    async def close(self) -> None:
        await self._client.close()
