"""The table of what a tenant may call on its cluster's engine: one row per route, read line by line.

A pattern is the path's segments after the cluster id: a literal (`_search`), `IDX` (an index
expression: a name, a comma list, a wildcard or `_all`, never another `_keyword`) or `ANY` (one
segment of any text: a document id, a template name, a task id). `HEAD` is checked as `GET`.
Every row names the engines it exists on; a route that no row allows is refused (deny by default).
Refusals with a known platform route are listed too, so the answer can say where to go instead.
A row's `reads` are its methods that only read: the gateway may send such a call again when the
engine failed it for a moment (a node leaving during a scale-in); `GET` is one unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

IDX = "{index}"
ANY = "{any}"
BOTH = frozenset({"opensearch", "elasticsearch"})
ES = frozenset({"elasticsearch"})
OS = frozenset({"opensearch"})

READ = frozenset({"GET"})
READ_POST = frozenset({"GET", "POST"})
WRITE = frozenset({"PUT", "POST"})
ALL = frozenset({"GET", "PUT", "POST", "DELETE"})


class BodyCheck(Enum):
    """What of the body must be read before the call may go on."""

    SETTINGS = "settings"  # index-level settings (create, update, templates, rollover, split, clone)
    REINDEX = "reindex"  # no `source.remote`: a reindex stays inside the cluster


@dataclass(frozen=True)
class Allowed:
    pattern: tuple[str, ...]
    methods: frozenset[str]
    engines: frozenset[str] = BOTH
    checks: tuple[tuple[frozenset[str], BodyCheck], ...] = ()  # (methods whose body is read, what)
    reads: frozenset[str] = READ  # methods that change nothing: safe to send twice


def row(pattern: str, methods: frozenset[str], engines: frozenset[str] = BOTH,
        check: BodyCheck | None = None, check_methods: frozenset[str] = WRITE,
        reads: frozenset[str] = READ) -> Allowed:
    parts = tuple(p for p in pattern.split("/") if p)
    return Allowed(parts, methods, engines, ((check_methods, check),) if check else (), reads & methods)


def lookup(pattern: str, engines: frozenset[str] = BOTH) -> Allowed:
    """A GET or POST that reads (a POST carries its query as the body): search, count, multi-get."""
    return row(pattern, READ_POST, engines, reads=READ_POST)


NOTHING = frozenset()


S = BodyCheck.SETTINGS
ALLOWED: tuple[Allowed, ...] = (
    # the cluster's greeting and health: what every client asks first
    row("/", READ), row("_cluster/health", READ), row(f"_cluster/health/{IDX}", READ),
    # documents
    row("_bulk", WRITE), row(f"{IDX}/_bulk", WRITE),
    lookup("_mget"), lookup(f"{IDX}/_mget"),
    row(f"{IDX}/_doc", frozenset({"POST"})), row(f"{IDX}/_doc/{ANY}", ALL),
    row(f"{IDX}/_create/{ANY}", WRITE), row(f"{IDX}/_update/{ANY}", frozenset({"POST"})),
    row(f"{IDX}/_source/{ANY}", READ),
    lookup("_mtermvectors"), lookup(f"{IDX}/_mtermvectors"),
    lookup(f"{IDX}/_termvectors"), lookup(f"{IDX}/_termvectors/{ANY}"),
    # search and its relatives
    lookup("_search"), lookup(f"{IDX}/_search"),
    lookup("_msearch"), lookup(f"{IDX}/_msearch"),
    lookup("_search/template"), lookup(f"{IDX}/_search/template"),
    lookup("_msearch/template"), lookup(f"{IDX}/_msearch/template"),
    lookup("_render/template"),
    # a scroll's every call moves it on: never sent twice
    row("_search/scroll", frozenset({"GET", "POST", "DELETE"}), reads=NOTHING),
    row(f"_search/scroll/{ANY}", frozenset({"GET", "POST", "DELETE"}), reads=NOTHING),
    lookup("_count"), lookup(f"{IDX}/_count"),
    lookup("_field_caps"), lookup(f"{IDX}/_field_caps"),
    lookup(f"{IDX}/_explain/{ANY}"),
    lookup("_validate/query"), lookup(f"{IDX}/_validate/query"),
    lookup("_analyze"), lookup(f"{IDX}/_analyze"),
    lookup(f"{IDX}/_knn_search", ES),
    # point in time: Elasticsearch's and OpenSearch's spellings
    row(f"{IDX}/_pit", frozenset({"POST"}), ES), row("_pit", frozenset({"DELETE"}), ES),
    row(f"{IDX}/_search/point_in_time", frozenset({"POST"}), OS),
    row("_search/point_in_time", frozenset({"DELETE"}), OS),
    row("_search/point_in_time/_all", frozenset({"GET", "DELETE"}), OS),
    # by-query updates and deletes, reindex inside the cluster, and their tasks
    row(f"{IDX}/_update_by_query", frozenset({"POST"})), row(f"{IDX}/_delete_by_query", frozenset({"POST"})),
    row("_reindex", frozenset({"POST"}), check=BodyCheck.REINDEX, check_methods=frozenset({"POST"})),
    row(f"_reindex/{ANY}/_rethrottle", frozenset({"POST"})),
    row(f"_update_by_query/{ANY}/_rethrottle", frozenset({"POST"})),
    row(f"_delete_by_query/{ANY}/_rethrottle", frozenset({"POST"})),
    row(f"_tasks/{ANY}", READ), row(f"_tasks/{ANY}/_cancel", frozenset({"POST"})),
    # indices: create, get, delete, open and close, mappings, index-level settings
    row(IDX, frozenset({"GET", "PUT", "DELETE"}), check=S, check_methods=frozenset({"PUT"})),
    row(f"{IDX}/_open", frozenset({"POST"})), row(f"{IDX}/_close", frozenset({"POST"})),
    row(f"{IDX}/_block/{ANY}", frozenset({"PUT"})),
    row("_mapping", READ), row(f"{IDX}/_mapping", frozenset({"GET", "PUT", "POST"})),
    row(f"_mapping/field/{ANY}", READ), row(f"{IDX}/_mapping/field/{ANY}", READ),
    row("_settings", frozenset({"GET", "PUT"}), check=S), row(f"_settings/{ANY}", READ),
    row(f"{IDX}/_settings", frozenset({"GET", "PUT"}), check=S), row(f"{IDX}/_settings/{ANY}", READ),
    row(f"{IDX}/_rollover", frozenset({"POST"}), check=S), row(f"{IDX}/_rollover/{ANY}", frozenset({"POST"}), check=S),
    row(f"{IDX}/_split/{ANY}", WRITE, check=S), row(f"{IDX}/_clone/{ANY}", WRITE, check=S),
    row("_refresh", READ_POST), row(f"{IDX}/_refresh", READ_POST),
    row("_flush", READ_POST), row(f"{IDX}/_flush", READ_POST),
    row("_stats", READ), row(f"_stats/{ANY}", READ), row(f"{IDX}/_stats", READ), row(f"{IDX}/_stats/{ANY}", READ),
    row(f"_resolve/index/{ANY}", READ),
    # aliases
    row("_aliases", READ_POST), row(f"{IDX}/_aliases", READ),
    row("_alias", READ), row(f"_alias/{ANY}", READ),
    row(f"{IDX}/_alias", READ), row(f"{IDX}/_alias/{ANY}", ALL), row(f"{IDX}/_aliases/{ANY}", ALL),
    # templates: their settings become new indices' settings, so they are read as settings
    row("_template", READ), row(f"_template/{ANY}", ALL, check=S),
    row("_index_template", READ), row(f"_index_template/{ANY}", ALL, check=S),
    row("_index_template/_simulate", frozenset({"POST"}), check=S),
    row(f"_index_template/_simulate/{ANY}", frozenset({"POST"}), check=S),
    row(f"_index_template/_simulate_index/{ANY}", frozenset({"POST"}), check=S),
    row("_component_template", READ), row(f"_component_template/{ANY}", ALL, check=S),
    # data streams
    row("_data_stream", READ), row(f"_data_stream/{ANY}", frozenset({"GET", "PUT", "DELETE"})),
    row("_data_stream/_stats", READ), row(f"_data_stream/{ANY}/_stats", READ),
    # ingest pipelines
    row("_ingest/pipeline", READ), row(f"_ingest/pipeline/{ANY}", frozenset({"GET", "PUT", "DELETE"})),
    row("_ingest/pipeline/_simulate", READ_POST), row(f"_ingest/pipeline/{ANY}/_simulate", READ_POST),
    row("_ingest/processor/grok", READ),
    # _cat: the tenant's own indices, aliases, counts, templates and health; never nodes or shards
    row("_cat", READ), row("_cat/indices", READ), row(f"_cat/indices/{ANY}", READ),
    row("_cat/aliases", READ), row(f"_cat/aliases/{ANY}", READ),
    row("_cat/count", READ), row(f"_cat/count/{ANY}", READ),
    row("_cat/templates", READ), row(f"_cat/templates/{ANY}", READ), row("_cat/health", READ),
    # the k-NN plugin's per-index calls (its stats are per node: the platform's)
    row(f"_plugins/_knn/warmup/{ANY}", READ, OS), row(f"_plugins/_knn/clear_cache/{ANY}", frozenset({"POST"}), OS),
    row(f"_opendistro/_knn/warmup/{ANY}", READ, OS),
)

SNAPSHOTS = ("snapshots and repositories are the platform's: take one with POST /clusters/{id}/snapshots, list "
             "them with GET /clusters/{id}/snapshots, restore with POST /clusters/{id}/restore (platform API)")
NODES = ("nodes, shard allocation and cluster settings are the platform's: change the node count with PATCH "
         "/clusters/{id} {\"replicas\": N} (platform API)")
SCRIPTS = "stored scripts are not available: put the script inline in the request"

# refusals that have somewhere to send the caller: the first segment (or `_cat/<x>`) decides
REFUSAL_REASONS: dict[str, str] = {
    "_snapshot": SNAPSHOTS, "_slm": SNAPSHOTS, "_remotestore": SNAPSHOTS,
    "_cat/snapshots": SNAPSHOTS, "_cat/repositories": SNAPSHOTS,
    "_nodes": NODES, "_cluster": NODES, "_cat/nodes": NODES, "_cat/allocation": NODES,
    "_cat/nodeattrs": NODES, "_cat/master": NODES, "_cat/cluster_manager": NODES, "_cat/shards": NODES,
    "_cat/recovery": NODES, "_cat/thread_pool": NODES, "_cat/fielddata": NODES, "_cat/plugins": NODES,
    "_cat/pending_tasks": NODES, "_cat/tasks": NODES, "_cat/segments": NODES, "_cat/segment_replication": NODES,
    "_scripts": SCRIPTS,
}

# index settings the platform relies on (drains and scaling move shards by allocation rules), or
# that reach the host: refused in a create, an update, a template, a rollover, a split or a clone
PLATFORM_SETTINGS = ("index.routing.allocation", "index.routing.rebalance", "index.data_path",
                     "index.remote_store", "index.store.hybrid", "index.shard.check_on_startup")
