"""Vector-index routes: create an index, add documents, search, through the engine adapter."""

from __future__ import annotations

from fastapi import HTTPException, Request

from libs.common.engines import (
    EngineError, IndexAlreadyExists, IndexNotFound, SearchEngine, VectorDocument, VectorIndexSpec, VectorQuery,
)
from libs.common.models import SERVING
from services.manager.http.deps import ClusterId, IndexName, load_cluster, manager, problem, keyed_router
from services.manager.schemas import (
    DocumentsRequest, DocumentsResult, SearchHitView, SearchRequest, SearchResult, VectorIndexRequest, VectorIndexView,
)

async def _engine(request: Request, cluster_id: ClusterId) -> SearchEngine:
    record = await load_cluster(request, cluster_id)
    if record.asleep:
        await manager(request).wake(cluster_id, "a vector-index call")
        raise HTTPException(503, {"error": "waking", "message": f"cluster {cluster_id} was hibernated and is "
                                  "waking; retry in a few seconds"}, headers={"Retry-After": "5"})
    if record.status not in SERVING or not record.endpoint:
        raise problem(409, "not_ready", f"cluster {cluster_id} is {record.status}; retry once it is ready")
    manager(request).activity.used(cluster_id)
    return manager(request).engines.engine_for(record)

router = keyed_router()


def _check_dimensions(vector: list, dimensions: int, field: str) -> None:
    if len(vector) != dimensions:
        raise problem(422, "invalid_request", f"vector has {len(vector)} numbers, the index {dimensions}",
                      field, f"send exactly {dimensions} numbers")


def _engine_problem(exc: EngineError, index: str) -> HTTPException:
    if isinstance(exc, IndexNotFound):
        return problem(404, "not_found", f"no vector index {index!r} in this cluster")
    if isinstance(exc, IndexAlreadyExists):
        return problem(409, "conflict", f"vector index {index!r} already exists", "name", "choose another name")
    if exc.status and 400 <= exc.status < 500:
        return problem(400, "engine_rejected", str(exc))
    return problem(503, "engine_unavailable", f"the cluster's engine did not answer: {exc}; retry shortly")


@router.post("/clusters/{cluster_id}/vector-indices", status_code=201, response_model=VectorIndexView,
             tags=["vectors"])
async def create_vector_index(cluster_id: ClusterId, body: VectorIndexRequest, request: Request):
    engine = await _engine(request, cluster_id)
    try:
        await engine.create_vector_index(VectorIndexSpec(body.name, body.dimensions, body.similarity, body.text_fields))
    except EngineError as exc:
        raise _engine_problem(exc, body.name)
    return VectorIndexView(**body.model_dump())


@router.post("/clusters/{cluster_id}/vector-indices/{index}/documents", response_model=DocumentsResult,
             tags=["vectors"])
async def index_documents(cluster_id: ClusterId, index: IndexName, body: DocumentsRequest, request: Request):
    engine = await _engine(request, cluster_id)
    try:
        dimensions = await engine.vector_dimensions(index)
        for i, doc in enumerate(body.documents):
            _check_dimensions(doc.vector, dimensions, f"documents[{i}].vector")
        result = await engine.index_documents(
            index, [VectorDocument(d.id, [float(x) for x in d.vector], d.fields) for d in body.documents]
        )
    except EngineError as exc:
        raise _engine_problem(exc, index)
    return DocumentsResult(indexed=result.indexed, errors=result.errors)


@router.post("/clusters/{cluster_id}/vector-indices/{index}/search", response_model=SearchResult, tags=["vectors"])
async def search(cluster_id: ClusterId, index: IndexName, body: SearchRequest, request: Request):
    engine = await _engine(request, cluster_id)
    try:
        _check_dimensions(body.vector, await engine.vector_dimensions(index), "vector")
        hits = await engine.vector_search(index, VectorQuery([float(x) for x in body.vector], body.k, body.filter))
    except EngineError as exc:
        raise _engine_problem(exc, index)
    return SearchResult(hits=[SearchHitView(id=h.id, score=h.score, fields=h.fields) for h in hits])
