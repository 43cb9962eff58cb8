"""The `ess` commands about what is in a cluster and around it: indices, loading documents,
search, snapshots, usage and keys. Engine calls go to the cluster's gateway endpoint."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import islice
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cli.client import ApiError, Client
from cli.output import JsonOption, as_json, client, err, fail, handles_errors, out, own_tenant, table

indices = typer.Typer(help="create indices", no_args_is_help=True)
docs = typer.Typer(help="load documents", no_args_is_help=True)
snapshots = typer.Typer(help="take, list and restore snapshots", no_args_is_help=True)
keys = typer.Typer(help="a tenant's API keys", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for group, name in ((indices, "indices"), (docs, "docs"), (snapshots, "snapshots"), (keys, "keys")):
        app.add_typer(group, name=name)
    app.command("search")(search)
    app.command("usage")(usage)


def endpoint(api: Client, cluster_id: str) -> str:
    cluster = api.cluster(cluster_id)
    if not cluster.get("endpoint"):
        fail(f"cluster {cluster_id} is {cluster['status']} and has no endpoint yet; wait until it is ready")
    return cluster["endpoint"]


@indices.command("create")
@handles_errors
def create_index(cluster_id: str, name: str,
                 dimensions: int = typer.Option(None, "--dimensions", help="a vector index of this many numbers"),
                 similarity: str = typer.Option("cosine", "--similarity", help="cosine, l2 or dot_product"),
                 text_field: list[str] = typer.Option([], "--text-field", help="a text field (repeatable)"),
                 mappings: Path = typer.Option(None, "--mappings", help="a JSON file: the index's body"),
                 json_out: bool = JsonOption):
    """An index: a vector index through the API with --dimensions, else the engine's own index."""
    api = client()
    if dimensions:
        answer = api.create_vector_index(cluster_id, {"name": name, "dimensions": dimensions,
                                                      "similarity": similarity, "text_fields": text_field})
    else:
        body = json.loads(mappings.read_text()) if mappings else {}
        answer = api.call("PUT", f"{endpoint(api, cluster_id)}/{name}", json=body)
    if json_out:
        return as_json(answer)
    out.print(f"index {name} created in {cluster_id}")


def _batches(lines, size: int):
    iterator = iter(lines)
    while batch := list(islice(iterator, size)):
        yield batch


def _documents(file: Path, lines):
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as exc:
            fail(f"{file}:{number} is not a JSON document: {exc}", 2)
        if not isinstance(document, dict):
            fail(f"{file}:{number} is not a JSON object", 2)
        yield document


@docs.command("load")
@handles_errors
def load(cluster_id: str, file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON lines"),
         index: str = typer.Option(..., "--index", "-i"), batch: int = typer.Option(500, "--batch"),
         json_out: bool = JsonOption):
    """Load a file of JSON lines (one document each; `_id` if given) with _bulk, with a progress bar."""
    api = client()
    url = endpoint(api, cluster_id)
    with file.open() as checking:  # a first pass: a bad line stops the load before anything is sent
        total = sum(1 for _ in _documents(file, checking))
    loaded, errors = 0, []
    with file.open() as lines, Progress(TextColumn("loading {task.description}"), BarColumn(), MofNCompleteColumn(),
                                        TimeRemainingColumn(), console=err, disable=json_out) as progress:
        task = progress.add_task(file.name, total=total)
        for chunk in _batches(_documents(file, lines), batch):  # read as they go, not all at once
            answer = api.bulk(url, index, chunk)
            for item in answer.get("items", []):
                result = next(iter(item.values()))
                if result.get("error"):
                    errors.append({"id": result.get("_id"), "error": result["error"]})
                else:
                    loaded += 1
            progress.advance(task, len(chunk))
    api.call("POST", f"{url}/{index}/_refresh")  # searchable when the command returns
    summary = {"index": index, "loaded": loaded, "failed": len(errors), "errors": errors[:10]}
    if json_out:
        as_json(summary)
    else:
        out.print(f"{loaded} documents loaded into {index}" + (f", {len(errors)} failed" if errors else ""))
        for e in errors[:5]:
            err.print(f"  {e['id']}: {e['error'].get('reason', e['error'])}")
    if errors:
        raise typer.Exit(1)


@handles_errors
def search(cluster_id: str, index: str, query: str = typer.Argument(None, help="a text query (query string)"),
           vector: str = typer.Option(None, "--vector", help="kNN: a JSON list of numbers, e.g. '[1,0,0]'"),
           k: int = typer.Option(10, "--k", "-k", help="how many hits"),
           filter_: list[str] = typer.Option([], "--filter", help="field=value, with --vector (repeatable)"),
           json_out: bool = JsonOption):
    """Search an index: a text query through the endpoint, or kNN (--vector) through the API."""
    if not query and not vector:
        fail("give a text query or --vector", 2)
    api = client()
    if vector:
        try:
            numbers = json.loads(vector)
        except ValueError:
            fail("--vector must be a JSON list of numbers, e.g. '[1, 0, 0]'", 2)
        if any("=" not in f for f in filter_):
            fail("--filter takes field=value, e.g. --filter course=dessert", 2)
        body = {"vector": numbers, "k": k, "filter": dict(f.split("=", 1) for f in filter_)}
        hits = api.vector_search(cluster_id, index, body)["hits"]
    else:
        answer = api.text_search(endpoint(api, cluster_id), index, query, k)
        hits = [{"id": h["_id"], "score": h["_score"], "fields": h.get("_source", {})} for h in answer["hits"]["hits"]]
    if json_out:
        return as_json(hits)
    table(f"{len(hits)} hits", ["id", "score", "fields"],
          [[h["id"], f"{h['score']:.4f}" if h["score"] is not None else "", json.dumps(h["fields"])[:100]]
           for h in hits])


def _backups(call):
    """A snapshot call; a platform older than this `ess` may not have the backups API."""
    try:
        return call()
    except ApiError as exc:
        if exc.route_missing:
            fail(f"this platform's API is older than this ess and has no snapshots (answered {exc.status}); "
                 "upgrade the platform: POST/GET /clusters/{id}/snapshots, POST /clusters/{id}/restore")
        raise


@snapshots.command("create")
@handles_errors
def snapshot_create(cluster_id: str, json_out: bool = JsonOption):
    """Take a snapshot of the cluster (the platform names it)."""
    answer = _backups(lambda: client().create_snapshot(cluster_id))
    if json_out:
        return as_json(answer)
    out.print(f"snapshot of {cluster_id}: {json.dumps(answer)}")


@snapshots.command("list")
@handles_errors
def snapshot_list(cluster_id: str, json_out: bool = JsonOption):
    """The cluster's snapshots."""
    answer = _backups(lambda: client().snapshots(cluster_id))
    if json_out:
        return as_json(answer)
    items = answer.get("snapshots", []) if isinstance(answer, dict) else answer
    columns = sorted({k for item in items for k in item if not isinstance(item[k], (dict, list))})
    table(f"{len(items)} snapshots", columns or ["snapshot"], [[i.get(c) for c in columns] for i in items])


@snapshots.command("restore")
@handles_errors
def snapshot_restore(cluster_id: str, snapshot: str, json_out: bool = JsonOption):
    """Restore the cluster from one of its snapshots."""
    answer = _backups(lambda: client().cluster_action(cluster_id, "restore", {"snapshot": snapshot}))
    if json_out:
        return as_json(answer)
    out.print(f"restore of {cluster_id} from {snapshot}: {json.dumps(answer)}")


@handles_errors
def usage(tenant: str = typer.Option(None, "--tenant"), days: int = typer.Option(7, "--days"),
          json_out: bool = JsonOption):
    """What the tenant used, per day: node-hours, storage, documents indexed, searches, requests."""
    api = client()
    answer = api.usage(own_tenant(api, tenant), days)
    if json_out:
        return as_json(answer)
    per_day: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    names = ("node_hours", "storage_gb_hours", "documents_indexed", "search_requests", "requests")
    for record in answer["records"]:
        for name in names:
            per_day[record["period_start"][:10]][name] += record.get(name, 0)
    table(f"usage of {answer['tenant_org_id']}", ["day", *names],
          [[day, *[round(values[n], 2) for n in names]] for day, values in sorted(per_day.items())])


@keys.command("list")
@handles_errors
def keys_list(tenant: str = typer.Option(None, "--tenant"), json_out: bool = JsonOption):
    """The tenant's keys (never the keys themselves)."""
    api = client()
    found = api.keys(own_tenant(api, tenant))
    if json_out:
        return as_json(found)
    table(None, ["key_id", "created_at", "expires_at", "revoked_at"],
          [[k["key_id"], k["created_at"], k["expires_at"], k["revoked_at"]] for k in found])


@keys.command("create")
@handles_errors
def keys_create(tenant: str = typer.Option(None, "--tenant"),
                expires_in: int = typer.Option(None, "--expires-in", help="seconds"), json_out: bool = JsonOption):
    """A new key; it is shown this once only."""
    api = client()
    made = api.create_key(own_tenant(api, tenant), expires_in)
    if json_out:
        return as_json(made)
    out.print(f"key {made['key_id']} of {made['tenant_org_id']} (store it now, it is not shown again):")
    out.print(made["key"], highlight=False)


@keys.command("revoke")
@handles_errors
def keys_revoke(key_id: str, tenant: str = typer.Option(None, "--tenant"), json_out: bool = JsonOption):
    """Revoke a key: its next request is refused."""
    api = client()
    api.revoke_key(own_tenant(api, tenant), key_id)
    if json_out:
        return as_json({"key_id": key_id, "revoked": True})
    out.print(f"key {key_id} revoked")
