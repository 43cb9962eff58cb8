"""Elasticsearch 8 adapter (elasticsearch-py 8.x): `dense_vector` and the top-level `knn` search."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch
from elasticsearch import ApiError, NotFoundError

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

SIMILARITIES = {"cosine": "cosine", "l2": "l2_norm", "dot_product": "dot_product"}


def _engine_error(exc: ApiError) -> EngineError:
    if isinstance(exc, NotFoundError):
        return IndexNotFound(str(exc.message), 404)
    if exc.error == "resource_already_exists_exception" or exc.message == "resource_already_exists_exception":
        return IndexAlreadyExists(str(exc.message), 409)
    return EngineError(f"{exc.message}: {exc.body}", exc.status_code)


class ElasticsearchEngine:
    def __init__(self, endpoint: str, username: str | None = None, password: str | None = None):
        auth = (username, password) if username else None
        self._client = AsyncElasticsearch(hosts=[endpoint], basic_auth=auth, request_timeout=30)

    async def health(self) -> ClusterHealth:
        try:
            body = await self._client.cluster.health()
        except ApiError as exc:
            raise _engine_error(exc) from exc
        return ClusterHealth(status=body["status"], nodes=body["number_of_nodes"], cluster_name=body.get("cluster_name", ""))

    async def stats(self) -> ClusterStats:
        try:
            health = (await self._client.cluster.health(level="indices")).body
            nodes = (await self._client.nodes.stats(metric=NODE_STATS_METRICS,
                                                     filter_path=NODE_STATS_FIELDS)).body
            indices = (await self._client.indices.stats(metric="docs,store,indexing,search")).body
            info = (await self._client.nodes.info(metric="os", filter_path=NODE_INFO_FIELDS)).body
        except ApiError as exc:
            raise _engine_error(exc) from exc
        return parse_cluster_stats(health, nodes, indices, info)

    async def create_vector_index(self, spec: VectorIndexSpec) -> None:
        properties: dict[str, Any] = {
            VECTOR_FIELD: {
                "type": "dense_vector",
                "dims": spec.dimensions,
                "index": True,
                "similarity": SIMILARITIES[spec.similarity],
            },
            **text_field_mapping(spec.text_fields),
        }
        try:
            # readers and writers use the alias, so a reshard can swap the index beneath it
            await self._client.indices.create(index=generation_name(spec.name, 1), mappings={"properties": properties},
                                              aliases={spec.name: {"is_write_index": True}})
        except ApiError as exc:
            raise _engine_error(exc) from exc

    async def vector_dimensions(self, index: str) -> int:
        try:
            mapping = await self._client.indices.get_mapping(index=index)
        except ApiError as exc:
            raise _engine_error(exc) from exc
        return vector_dimensions_in(mapping.body, index, "dims")

    async def index_documents(self, index: str, documents: list[VectorDocument]) -> IndexResult:
        try:
            response = await self._client.bulk(operations=bulk_body(index, documents), refresh="wait_for")
        except ApiError as exc:
            raise _engine_error(exc) from exc
        return bulk_result(response.body)

    async def vector_search(self, index: str, query: VectorQuery) -> list[SearchHit]:
        knn: dict[str, Any] = {
            "field": VECTOR_FIELD,
            "query_vector": query.vector,
            "k": query.k,
            "num_candidates": knn_candidates(query.k),
        }
        if query.filter:
            knn["filter"] = term_filters(query.filter)
        try:
            response = await self._client.search(
                index=index, knn=knn, size=query.k, source_excludes=[VECTOR_FIELD]
            )
        except ApiError as exc:
            raise _engine_error(exc) from exc
        return search_hits(response.body)

    async def _request(self, method: str, path: str, body):
        headers = {"accept": "application/json"}
        if body is not None:  # a list of objects is NDJSON (a bulk)
            headers["content-type"] = "application/x-ndjson" if isinstance(body, list) else "application/json"
        try:
            return (await self._client.perform_request(method, path, headers=headers, body=body)).body
        except ApiError as exc:
            raise _engine_error(exc) from exc

    async def change_password(self, current: str, new: str) -> None:
        """The connected user's password (the current one authenticates the call)."""
        await self._request("POST", "/_security/user/_password", {"password": new})

    def admin(self) -> EngineAdmin:
        return EngineAdmin(self._request)

    async def close(self) -> None:
        await self._client.close()
