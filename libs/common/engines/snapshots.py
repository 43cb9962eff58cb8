"""Snapshots written once over the REST API that Elasticsearch 8 and OpenSearch share: register a
repository, create, list, delete and restore snapshots, and tell when a restore is done.

Every call starts work and returns: the engine snapshots and restores in the background, and the
manager looks again on its next pass (never blocking a loop on an engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from libs.common.engines.base import EngineError

Request = Any  # (method, path, body) -> awaitable answer: the adapters' `_request`


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    status: str  # in_progress, success, partial, failed
    started_at: datetime | None
    finished_at: datetime | None
    indices: list[str]
    size_bytes: int = 0
    reason: str | None = None  # why it failed, in the engine's words
    shard_failures: list[str] = field(default_factory=list)


class SnapshotExists(EngineError):
    """A snapshot of that name is in the repository already (a redo of a period's snapshot)."""


class SnapshotMissing(EngineError):
    """No such snapshot, or no such repository."""


def _time(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, timezone.utc) if millis else None


def parse_snapshot(entry: dict[str, Any]) -> SnapshotInfo:
    """One entry of `GET /_snapshot/<repo>/_all`."""
    failures = [f"{f.get('index')}[{f.get('shard_id')}]: {f.get('reason')}" for f in entry.get("failures", [])]
    state = str(entry.get("state", "in_progress")).lower()
    reason = entry.get("reason") or (failures[0] if failures and state != "success" else None)
    return SnapshotInfo(
        name=entry["snapshot"], status=state, started_at=_time(entry.get("start_time_in_millis")),
        finished_at=_time(entry.get("end_time_in_millis")) if state != "in_progress" else None,
        indices=sorted(entry.get("indices", [])), reason=reason, shard_failures=failures,
    )


def family(name: str) -> str:
    """The name a tenant knows an index by: a vector index's generations (`docs-000002`) sit
    behind its alias (`docs`), see admin.generation_name."""
    stem, _, number = name.rpartition("-")
    return stem if stem and len(number) == 6 and number.isdigit() else name


def resolve(requested: list[str], in_snapshot: list[str]) -> tuple[list[str], list[str]]:
    """The snapshot's indices that `requested` names (by index, or by the alias of its
    generations), and the requested names it does not hold."""
    found, missing = set(), []
    for name in requested:
        matches = [i for i in in_snapshot if i == name or family(i) == name]
        found.update(matches)
        if not matches:
            missing.append(name)
    return sorted(found), missing


def user_indices(names: list[str]) -> list[str]:
    """Tenant indices only: system and hidden ones (a leading dot) belong to the engine."""
    return sorted(n for n in names if not n.startswith("."))


class Snapshots:
    def __init__(self, request: Request):
        self._request = request

    async def register(self, repository: str, body: dict[str, Any]) -> None:
        """Create or update a repository (idempotent: the same body again changes nothing)."""
        await self._request("PUT", f"/_snapshot/{quote(repository)}", body)

    async def create(self, repository: str, name: str) -> None:
        """Start a snapshot of every tenant index; SnapshotExists if the name is taken."""
        body = {"indices": "*,-.*", "include_global_state": False, "ignore_unavailable": True}
        try:
            await self._request("PUT", f"/_snapshot/{quote(repository)}/{quote(name)}?wait_for_completion=false",
                                body)
        except EngineError as exc:
            if "already exists" in str(exc) or "invalid_snapshot_name" in str(exc):
                raise SnapshotExists(f"snapshot {name} exists already", 409) from exc
            raise

    async def list(self, repository: str, sizes: bool = True) -> list[SnapshotInfo]:
        """Every snapshot in the repository, oldest first; with their sizes unless `sizes` is False."""
        answer = await self._request("GET", f"/_snapshot/{quote(repository)}/_all", None)
        found = sorted((parse_snapshot(e) for e in answer.get("snapshots", [])),
                       key=lambda s: (s.started_at or datetime.max.replace(tzinfo=timezone.utc), s.name))
        if not sizes:
            return found
        return [await self._with_size(repository, s) for s in found]

    async def _with_size(self, repository: str, snapshot: SnapshotInfo) -> SnapshotInfo:
        try:
            status = await self._request("GET", f"/_snapshot/{quote(repository)}/{quote(snapshot.name)}/_status",
                                         None)
            size = int(status["snapshots"][0]["stats"]["total"]["size_in_bytes"])
        except (EngineError, KeyError, IndexError, TypeError, ValueError):
            size = 0  # a failed snapshot may have no stats: its size is nothing kept
        return SnapshotInfo(**{**snapshot.__dict__, "size_bytes": size})

    async def get(self, repository: str, name: str) -> SnapshotInfo:
        try:
            answer = await self._request("GET", f"/_snapshot/{quote(repository)}/{quote(name)}", None)
        except EngineError as exc:
            if exc.status == 404:
                raise SnapshotMissing(f"no snapshot {name}", 404) from exc
            raise
        entries = answer.get("snapshots", [])
        if not entries:
            raise SnapshotMissing(f"no snapshot {name}", 404)
        return parse_snapshot(entries[0])

    async def delete(self, repository: str, name: str) -> None:
        """Delete a snapshot; one that is gone already is deleted."""
        try:
            await self._request("DELETE", f"/_snapshot/{quote(repository)}/{quote(name)}", None)
        except EngineError as exc:
            if exc.status != 404:
                raise

    async def restore(self, repository: str, name: str, indices: list[str]) -> list[str]:
        """Replace `indices` (empty: every tenant index of the snapshot) with their snapshot copies:
        delete those that exist, then start the restore. Returns the indices being restored."""
        snapshot = await self.get(repository, name)
        wanted, missing = resolve(indices, snapshot.indices) if indices else (user_indices(snapshot.indices), [])
        if missing:
            raise SnapshotMissing(f"snapshot {name} holds no index {', '.join(missing)}", 404)
        if not wanted:
            return []
        # the index and its other generations go: a reshard since the snapshot made a newer one
        # that would otherwise share the alias with the restored copy
        families = {family(i) for i in wanted}
        existing = await self._request("GET", "/_cat/indices?format=json&h=index&expand_wildcards=all", None)
        present = [row["index"] for row in existing if row["index"] in wanted or
                   (not row["index"].startswith(".") and family(row["index"]) in families)]
        if present:
            await self._request("DELETE", "/" + ",".join(quote(i) for i in present), None)
        body = {"indices": ",".join(wanted), "include_global_state": False, "include_aliases": True}
        await self._request("POST", f"/_snapshot/{quote(repository)}/{quote(name)}/_restore", body)
        return wanted

    async def restored(self, indices: list[str]) -> bool:
        """Every primary of `indices` recovered from the snapshot (replicas may still follow)."""
        if not indices:
            return True
        rows = await self._request("GET", "/_cat/shards/" + ",".join(quote(i) for i in indices)
                                   + "?format=json&h=index,prirep,state", None)
        primaries = [r for r in rows if r.get("prirep") == "p"]
        present = {r["index"] for r in primaries}
        return present >= set(indices) and all(r.get("state") == "STARTED" for r in primaries)
