"""`ess platform`: the operator's backups of the platform's own state (clusters, tenants, keys as
hashes, quota claims, usage and audit), taken now, listed, and restored into an empty NATS."""

from __future__ import annotations

import typer

from cli.output import JsonOption, as_json, client, handles_errors, out, table

platform = typer.Typer(help="the operator's backups of the platform's own state (NATS)", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(platform, name="platform")


def _counts(found: dict[str, int]) -> str:
    return ", ".join(f"{name.removeprefix('ess_').removeprefix('ESS_').lower()} {n}" for name, n in found.items())


@platform.command("backup")
@handles_errors
def backup(json_out: bool = JsonOption):
    """Back up the platform's state now, to the snapshot store; its id is printed."""
    manifest = client().call("POST", "/platform/backups")
    if json_out:
        return as_json(manifest)
    out.print(f"control-plane backup {manifest['id']} taken: {_counts(manifest['buckets'])}; "
              f"{_counts(manifest['streams'])}")


@platform.command("backups")
@handles_errors
def backups(json_out: bool = JsonOption):
    """Every control-plane backup, newest first."""
    found = client().call("GET", "/platform/backups")
    if json_out:
        return as_json(found)
    table(None, ["id", "taken at", "why", "what"],
          [[m["id"], m["taken_at"][:19].replace("T", " "), m["reason"], _counts(m["buckets"])] for m in found])


@platform.command("restore")
@handles_errors
def restore(backup_id: str, yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
            json_out: bool = JsonOption):
    """Restore a backup into an empty NATS (after NATS lost its data); says what changed since."""
    if not yes and not typer.confirm(f"restore the platform's state from {backup_id}?"):
        raise typer.Exit(1)
    report = client().call("POST", f"/platform/backups/{backup_id}/restore")
    if json_out:
        return as_json(report)
    out.print(f"restored {backup_id} (taken {report['taken_at'][:19].replace('T', ' ')}): "
              f"{report['clusters']} cluster(s); {_counts(report['buckets'])}")
    for line in report["since_backup"]:
        out.print(f"- {line}")
    for cluster_id in report["engines_unknown_to_backup"]:
        out.print(f"  made after the backup, kept: {cluster_id}")
    for cluster_id in report["clusters_without_engine"]:
        out.print(f"  no engine or data any more: {cluster_id}")
