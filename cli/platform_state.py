"""`ess platform`: the operator's backups of the platform's own state (clusters, tenants, keys as
hashes, quota claims, usage and audit), taken now, listed, and restored into an empty NATS; and
the operator's fleet upgrades (every cluster on a version, a few at a time)."""

from __future__ import annotations

import typer

from cli.output import JsonOption, as_json, client, handles_errors, out, table

platform = typer.Typer(help="the operator's backups of the platform's own state (NATS) and fleet upgrades",
                       no_args_is_help=True)


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


def _upgrade_rows(upgrade: dict) -> list[list[str]]:
    return [[c["id"], c["tenant_org_id"], c["progress"], c["version"], c["reason"]] for c in upgrade["clusters"]]


@platform.command("upgrade")
@handles_errors
def fleet_upgrade(engine: str = typer.Option("opensearch", "--engine"),
                  from_version: str = typer.Option(..., "--from", help="the version to leave, e.g. 2.19.1"),
                  to_version: str = typer.Option(..., "--to", help="the version to reach, e.g. 3.5.0"),
                  at_once: int = typer.Option(2, "--at-once", help="clusters stopped for it at the same time"),
                  wake_hibernated: bool = typer.Option(False, "--wake-hibernated",
                                                       help="wake hibernated ones for it, not at their next request"),
                  tenant: str = typer.Option(None, "--tenant", help="only this tenant's clusters"),
                  json_out: bool = JsonOption):
    """Upgrade every cluster on a version (of one tenant with --tenant), a few at a time."""
    body = {"engine": engine, "from_version": from_version, "to_version": to_version, "at_once": at_once,
            "wake_hibernated": wake_hibernated, **({"tenant_org_id": tenant} if tenant else {})}
    upgrade = client().call("POST", "/platform/upgrades", json=body)
    if json_out:
        return as_json(upgrade)
    out.print(f"fleet upgrade {upgrade['id']}: {len(upgrade['targets'])} cluster(s) from {engine} {from_version} "
              f"to {to_version}, {at_once} at a time; `ess platform upgrades {upgrade['id']}` follows it")


@platform.command("upgrades")
@handles_errors
def fleet_upgrades(upgrade_id: str = typer.Argument(None, help="one upgrade's clusters; none: every upgrade"),
                   json_out: bool = JsonOption):
    """Fleet upgrades, newest first, or one upgrade's progress per cluster."""
    if upgrade_id:
        found = client().call("GET", f"/platform/upgrades/{upgrade_id}")
        if json_out:
            return as_json(found)
        out.print(f"{found['id']}: {found['engine']} {found['from_version']} to {found['to_version']}, {found['state']}")
        table(None, ["cluster", "tenant", "progress", "version", "reason"], _upgrade_rows(found))
        return
    found = client().call("GET", "/platform/upgrades")
    if json_out:
        return as_json(found)
    table(None, ["id", "asked", "engine", "from", "to", "state", "clusters"],
          [[u["id"], u["created_at"][:19].replace("T", " "), u["engine"], u["from_version"], u["to_version"],
            u["state"], str(len(u["targets"]))] for u in found])
