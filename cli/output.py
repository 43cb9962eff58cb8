"""How `ess` shows things: JSON for scripts (`--json`), Rich tables for people, errors with the
API's field and fix on stderr and a non-zero exit, and the live status line while a cluster moves."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable

import typer
from rich.console import Console
from rich.table import Table

from cli import config
from cli.client import ApiError, Client, Unreachable

out = Console()
err = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="print the API's answer as JSON, for scripts")
NoWaitOption = typer.Option(False, "--no-wait", help="answer at once instead of waiting for the cluster")
WaitOption = typer.Option(600.0, "--timeout", help="seconds to wait for the cluster before giving up")


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def handles_errors(command: Callable) -> Callable:
    """Every command: an API error names its fields and fixes and exits 1; no login exits 2."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            err.print(f"[bold red]error:[/] {exc.message} [dim]({exc.error}, HTTP {exc.status})[/]", highlight=False)
            for f in exc.fields:
                err.print(f"  [bold]{f.get('field')}[/]: {f.get('message')}", highlight=False)
                if f.get("fix"):
                    err.print(f"    fix: {f['fix']}", highlight=False)
            raise typer.Exit(1)
        except Unreachable as exc:
            fail(f"no answer from {exc}; is the platform running (make up) and the URL right (ess login)?")

    return run


def client() -> Client:
    login = config.current()
    if login is None:
        fail("not logged in: run `ess login`, or set ESS_API_URL and ESS_API_KEY", 2)
    return Client(login.url, login.key)


def own_tenant(api: Client, tenant: str | None) -> str:
    """The tenant a command is about: given, or the key's only tenant."""
    if tenant:
        return tenant
    if api.is_operator():
        fail("the operator's key sees every tenant: name one with --tenant", 2)
    return api.tenants()[0]["tenant_org_id"]


def as_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(title: str | None, columns: list[str], rows: list[list]) -> None:
    shown = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*["" if v is None else str(v) for v in row])
    out.print(shown)


STATUS_STYLE = {"ready": "green", "failed": "red", "deleting": "red", "hibernating": "blue", "hibernated": "blue"}
HEALTH_STYLE = {"green": "green", "yellow": "yellow", "red": "red"}


def status_text(cluster: dict) -> str:
    status = cluster["status"]
    health = cluster.get("health") or "-"
    return (f"[{STATUS_STYLE.get(status, 'yellow')}]{status}[/] health [{HEALTH_STYLE.get(health, 'dim')}]"
            f"{health}[/] nodes {cluster.get('nodes', 0)}/{cluster.get('replicas')}")


def show_cluster(cluster: dict) -> None:
    rows = [[name, cluster.get(name)] for name in (
        "id", "tenant_org_id", "service_name", "engine", "version", "status", "status_reason", "health", "nodes",
        "replicas", "cpu", "memory", "storage", "endpoint", "hibernate_after_s", "last_active_at", "created_at")]
    table(None, ["field", "value"], rows)


def event_text(event: dict) -> str:
    """What one lifecycle event says to a person: what happened or was decided, and why."""
    kind, reason = event.get("kind"), event.get("reason") or ""
    if kind == "plan":
        nodes, current = event.get("nodes"), event.get("current_nodes")
        decided = f"nodes {current} -> {nodes}" if nodes != current else f"nodes kept at {nodes}"
        changes = [f"{index} {n} replica(s)" for index, n in (event.get("replicas") or {}).items()]
        changes += [f"{index} split to {n} primaries" for index, n in (event.get("splits") or {}).items()]
        return f"{', '.join([decided, *changes])}: {reason}"
    if kind == "scale":
        return f"{event.get('nodes')} node(s) asked of the platform: {reason}"
    if kind == "action":
        return f"{event.get('action')} {event.get('outcome')}: {event.get('detail')}"
    if kind == "status":
        return f"{event.get('status')}: {reason}"
    if kind == "desired":
        return f"desired state {event.get('change')}"
    return reason or kind or ""


def wait_for(api: Client, cluster_id: str, done: Callable[[dict], bool], timeout_s: float, live: bool) -> dict:
    """Poll the cluster until `done`; a live status line on stderr meanwhile. Failed or late: exit 1."""
    deadline = time.monotonic() + timeout_s
    with err.status(f"cluster {cluster_id}: asking", spinner="dots") if live else _quiet() as line:
        while True:
            cluster = api.cluster(cluster_id)
            if line:
                reason = cluster.get("status_reason") or ""
                line.update(f"cluster {cluster_id}: {status_text(cluster)} [dim]{reason[:80]}[/]")
            if done(cluster):
                if live:
                    err.print(f"cluster {cluster_id}: {status_text(cluster)}")
                return cluster
            if cluster["status"] == "failed":
                fail(f"cluster {cluster_id} failed: {cluster.get('status_reason')}")
            if time.monotonic() > deadline:
                fail(f"cluster {cluster_id} is still {cluster['status']} after {timeout_s:.0f} s; "
                     f"`ess clusters get {cluster_id}` shows it later")
            time.sleep(1.0)


class _quiet:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
