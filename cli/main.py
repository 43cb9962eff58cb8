"""The `ess` command: `login` and the `clusters` group here; indices, documents, search,
snapshots, usage and keys in `cli.data`; the operator's control-plane backups in
`cli.platform_state`. Every command takes `--json`."""

from __future__ import annotations

import getpass
import os

import typer

from cli import config, data, platform_state
from cli.client import ApiError, Client
from cli.output import (
    JsonOption, NoWaitOption, WaitOption, as_json, client, err, event_text, fail, handles_errors, out, own_tenant,
    show_cluster, status_text, table, wait_for,
)

app = typer.Typer(help="es-serverless: search clusters as a service, from the command line.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
clusters = typer.Typer(help="create, list, scale, hibernate and delete clusters; their events", no_args_is_help=True)


@app.command()
@handles_errors
def login(url: str = typer.Option("http://127.0.0.1:8080", "--url", help="the platform's API"),
          key: str = typer.Option(None, "--key", help="an API key; asked for when left out"),
          json_out: bool = JsonOption):
    """Check an API key against the platform and keep it, with the URL, for the next commands."""
    key = key or typer.prompt("API key", hide_input=True)
    api = Client(url, key)
    tenants = api.tenants()  # a keyed call: a wrong key or URL fails here, not later
    operator = api.is_operator()
    path = config.save(config.Login(url, key))
    who = "the operator (every tenant)" if operator else f"tenant {tenants[0]['tenant_org_id']}"
    if json_out:
        return as_json({"api_url": url, "config": str(path), "operator": operator,
                        "tenants": [t["tenant_org_id"] for t in tenants]})
    out.print(f"logged in to {url} as {who}; saved in {path}")


app.add_typer(clusters, name="clusters")
data.register(app)
platform_state.register(app)


@clusters.command("create")
@handles_errors
def create(service: str = typer.Argument(..., help="the service name, unique in the tenant (a DNS label)"),
           tenant: str = typer.Option(None, "--tenant", help="the tenant; a tenant key's own by default"),
           user: str = typer.Option(None, "--user", help="who asks; your login name by default"),
           nodes: int = typer.Option(1, "--nodes", help="number of nodes, 1..9"),
           cpu: str = typer.Option("500m", "--cpu"), memory: str = typer.Option("1Gi", "--memory"),
           storage: str = typer.Option("5Gi", "--storage"),
           engine: str = typer.Option(None, "--engine", help="opensearch or elasticsearch"),
           version: str = typer.Option(None, "--version"),
           hibernate_after: int = typer.Option(None, "--hibernate-after", help="idle seconds; 0 never"),
           no_wait: bool = NoWaitOption, timeout: float = WaitOption, json_out: bool = JsonOption):
    """Ask for a cluster and wait until it is ready (its endpoint is then shown)."""
    api = client()
    body = {"tenant_org_id": own_tenant(api, tenant), "user": user or os.environ.get("USER") or getpass.getuser(),
            "service_name": service, "replicas": nodes, "cpu": cpu, "memory": memory, "storage": storage}
    body.update({k: v for k, v in (("engine", engine), ("version", version),
                                   ("hibernate_after_s", hibernate_after)) if v is not None})
    cluster = api.create_cluster(body)
    if not json_out:
        err.print(f"cluster {cluster['id']} requested")
    if not no_wait:
        cluster = wait_for(api, cluster["id"], lambda c: c["status"] == "ready", timeout, live=not json_out)
    if json_out:
        return as_json(cluster)
    show_cluster(cluster)


@clusters.command("list")
@handles_errors
def list_(tenant: str = typer.Option(None, "--tenant"), json_out: bool = JsonOption):
    """The clusters you may see, oldest first."""
    found = client().clusters(tenant)
    if json_out:
        return as_json(found)
    table(None, ["id", "tenant", "service", "engine", "status", "health", "nodes", "endpoint"],
          [[c["id"], c["tenant_org_id"], c["service_name"], f"{c['engine']} {c['version']}", c["status"],
            c.get("health"), f"{c['nodes']}/{c['replicas']}", c.get("endpoint")] for c in found])


@clusters.command("get")
@handles_errors
def get(cluster_id: str, json_out: bool = JsonOption):
    """One cluster: status, reason, health, nodes, endpoint."""
    cluster = client().cluster(cluster_id)
    if json_out:
        return as_json(cluster)
    show_cluster(cluster)


@clusters.command("scale")
@handles_errors
def scale(cluster_id: str, nodes: int = typer.Option(None, "--nodes", help="the node count, 1..9"),
          memory: str = typer.Option(None, "--memory", help="each node's memory, e.g. 2Gi"),
          no_wait: bool = NoWaitOption, timeout: float = WaitOption, json_out: bool = JsonOption):
    """Change the node count or memory while the cluster serves, and wait until it matches."""
    changes = {k: v for k, v in (("replicas", nodes), ("memory", memory)) if v is not None}
    if not changes:
        fail("nothing to change: give --nodes and/or --memory", 2)
    api = client()
    cluster = api.update_cluster(cluster_id, changes)
    if not no_wait:
        cluster = wait_for(api, cluster_id, lambda c: c["status"] == "ready" and c["nodes"] == c["replicas"],
                           timeout, live=not json_out)
    if json_out:
        return as_json(cluster)
    show_cluster(cluster)


@clusters.command("upgrade")
@handles_errors
def upgrade(cluster_id: str, version: str = typer.Argument(..., help="the engine version, e.g. 3.5.0"),
            no_wait: bool = NoWaitOption, timeout: float = WaitOption, json_out: bool = JsonOption):
    """Upgrade the cluster's engine and wait until it runs the new version (a hibernated one wakes on it)."""
    api = client()
    cluster = api.update_cluster(cluster_id, {"version": version})
    if not no_wait and cluster["status"] != "hibernated":
        cluster = wait_for(api, cluster_id, lambda c: c["status"] == "ready", timeout, live=not json_out)
    if json_out:
        return as_json(cluster)
    show_cluster(cluster)


@clusters.command("events")
@handles_errors
def events(cluster_id: str, limit: int = typer.Option(50, "--limit", help="the latest this many, 1..1000"),
           json_out: bool = JsonOption):
    """Status changes and scaling decisions (a node more, fewer or none) with their reasons, oldest first."""
    found = client().events(cluster_id, limit)
    if json_out:
        return as_json(found)
    table(None, ["time", "kind", "what and why"],
          [[(e.get("occurred_at") or "")[:19].replace("T", " "), e.get("kind"), event_text(e)] for e in found])


def _action(cluster_id: str, action: str, json_out: bool) -> None:
    try:
        cluster = client().cluster_action(cluster_id, action)
    except ApiError as exc:
        if exc.route_missing:
            fail(f"this platform's API has no `{action}` yet (POST /clusters/{{id}}/{action} answered "
                 f"{exc.status})")
        raise
    if json_out:
        return as_json(cluster)
    out.print(f"cluster {cluster_id}: {status_text(cluster)}")


@clusters.command("hibernate")
@handles_errors
def hibernate(cluster_id: str, json_out: bool = JsonOption):
    """Stop the cluster's engine now, keeping its data; the next request wakes it."""
    _action(cluster_id, "hibernate", json_out)


@clusters.command("wake")
@handles_errors
def wake(cluster_id: str, json_out: bool = JsonOption):
    """Start a hibernated cluster again without waiting for a request."""
    _action(cluster_id, "wake", json_out)


@clusters.command("undelete")
@handles_errors
def undelete(cluster_id: str, json_out: bool = JsonOption):
    """Bring back a deleted cluster, where the platform keeps deleted clusters (it says when not)."""
    _action(cluster_id, "undelete", json_out)


@clusters.command("delete")
@handles_errors
def delete(cluster_id: str, yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
           json_out: bool = JsonOption):
    """Delete a cluster and its data."""
    if not yes and not typer.confirm(f"delete cluster {cluster_id} and all its data?"):
        raise typer.Exit(1)
    cluster = client().delete_cluster(cluster_id)
    if json_out:
        return as_json(cluster)
    out.print(f"cluster {cluster_id}: {cluster['status']}")
