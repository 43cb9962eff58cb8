"""Cluster administration written once over the REST API that Elasticsearch 8 and OpenSearch
share: replicas and resharding (a new index, a copy and an alias swap) for the shard
controller; node exclusion and drain checks for the drivers, which own draining.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from libs.common.engines.snapshots import Snapshots
from libs.common.engines.paged_copy import PagedCopyFailed, is_paged, paged_copy_step, start_paged_copy

Request = Callable[[str, str, dict[str, Any] | None], Awaitable[Any]]

def generation_name(alias: str, generation: int) -> str:
    return f"{alias}-{generation:06d}"


def next_generation(index: str) -> str:
    alias, _, number = index.rpartition("-")
    return generation_name(alias, int(number) + 1)


class CopyFailed(Exception):
    """The engine's copy task ended with an error."""


class EngineAdmin:
    def __init__(self, request: Request):
        self._request = request

    async def set_replicas(self, index: str, replicas: int) -> None:
        await self._request("PUT", f"/{index}/_settings", {"index": {"number_of_replicas": replicas}})

    async def exclude_nodes(self, names: list[str]) -> None:
        # transient: it must not outlive the nodes, and a full restart ends a drain anyway
        await self._request("PUT", "/_cluster/settings",
                            {"transient": {"cluster.routing.allocation.exclude._name": ",".join(names)}})
        await self._request("POST", f"/_cluster/voting_config_exclusions?node_names={quote(','.join(names))}", None)

    async def drain_pending(self, leaving: list[str], remaining_nodes: int) -> int:
        """Shard copies still to move off `leaving` (see `pending_drain`); 0: safe to remove them."""
        return pending_drain(await self.shard_rows(), leaving, remaining_nodes)

    async def clear_exclusions(self, wait_for_removal: bool = False) -> None:
        """Lift a drain. Right after its nodes stopped, wait for them to leave first: a voting
        exclusion lifted while the node is still listed could vote it back into the config."""
        await self._request("PUT", "/_cluster/settings",
                            {"transient": {"cluster.routing.allocation.exclude._name": None}})
        wait = "true" if wait_for_removal else "false"
        await self._request("DELETE", f"/_cluster/voting_config_exclusions?wait_for_removal={wait}", None)

    async def shard_rows(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/_cat/shards?format=json&h=index,shard,prirep,state,node", None)

    async def create_index_like(self, source: str, target: str, primaries: int) -> None:
        """A new generation with more primaries and the source's mappings and index settings."""
        mapping = (await self._request("GET", f"/{source}/_mapping", None))[source]["mappings"]
        settings = (await self._request("GET", f"/{source}/_settings", None))[source]["settings"]["index"]
        kept = {k: v for k, v in settings.items() if k in ("knn", "number_of_replicas", "refresh_interval")}
        body = {"settings": {"index": {**kept, "number_of_shards": primaries}}, "mappings": mapping}
        await self._request("PUT", f"/{target}", body)

    async def move_writes(self, alias: str, source: str, target: str) -> None:
        """One atomic alias change: readers see both generations, writers only the new one."""
        await self._request("POST", "/_aliases", {"actions": [
            {"add": {"index": source, "alias": alias, "is_write_index": False}},
            {"add": {"index": target, "alias": alias, "is_write_index": True}},
        ]})

    async def start_copy(self, source: str, target: str, paged: bool = False) -> str:
        """The copy of a reshard: `_reindex` as a task, or paged (an engine without reindex)."""
        if paged:
            return await start_paged_copy(self._request, source, target)
        # op_type create: a document written to the new generation meanwhile is newer; keep it
        body = {"conflicts": "proceed", "source": {"index": source}, "dest": {"index": target, "op_type": "create"}}
        answer = await self._request("POST", "/_reindex?wait_for_completion=false&refresh=true", body)
        return answer["task"]

    async def copy_step(self, task_id: str) -> tuple[bool, str]:
        """Advance a copy (a paged one copies; `_reindex` runs by itself): (done, its task id now)."""
        if is_paged(task_id):
            try:
                return await paged_copy_step(self._request, task_id)
            except PagedCopyFailed as exc:
                raise CopyFailed(str(exc)) from exc
        return await self.copy_done(task_id), task_id

    async def copy_done(self, task_id: str) -> bool:
        answer = await self._request("GET", f"/_tasks/{task_id}", None)
        if answer.get("completed") and answer.get("error"):
            raise CopyFailed(str(answer["error"]))
        return bool(answer.get("completed"))

    async def retire(self, alias: str, source: str) -> None:
        """Readers move to the new generation alone; the old one goes."""
        await self._request("POST", "/_aliases", {"actions": [{"remove_index": {"index": source}}]})

    async def delete_index(self, index: str) -> None:
        await self._request("DELETE", f"/{index}", None)

    async def refresh(self, index: str) -> None:
        await self._request("POST", f"/{index}/_refresh", None)

    # it sat indented under `pending_drain`, unreachable, so every hibernation skipped its flush
    async def flush(self) -> None:
        """Every index's translog into segments: a hibernated engine restarts without replaying it."""
        await self._request("POST", "/_flush", None)

    def snapshots(self) -> Snapshots:
        return Snapshots(self._request)


def pending_drain(rows: list[dict[str, Any]], leaving: list[str], remaining_nodes: int) -> int:
    """Shard copies that must still move before `leaving` go (rows of `_cat/shards`).

    A shard is safe when as many of its copies are started outside `leaving` as the remaining
    nodes can hold (a replica that has no node left to go to is dropped, never its last copy),
    and nothing is relocating or initializing. Unassigned copies that fit count as pending.
    """
    copies: dict[tuple[str, str], int] = {}
    started_outside: dict[tuple[str, str], int] = {}
    moving = 0
    for row in rows:
        key = (row["index"], row["shard"])
        copies[key] = copies.get(key, 0) + 1
        if row["state"] in ("RELOCATING", "INITIALIZING"):
            moving += 1
        elif row["state"] == "STARTED" and row.get("node") not in leaving:
            started_outside[key] = started_outside.get(key, 0) + 1
    short = sum(max(0, min(n, max(remaining_nodes, 1)) - started_outside.get(key, 0)) for key, n in copies.items())
    return moving + short
