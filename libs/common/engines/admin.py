"""Cluster administration the shard controller needs, written once over the REST API that
Elasticsearch 8 and OpenSearch share: replicas, allocation exclusion, drain checks, and
resharding through a new index, a copy and an alias swap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

Request = Callable[[str, str, dict[str, Any] | None], Awaitable[Any]]

FIRST_GENERATION = "000001"


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
        # transient: the exclusion goes away with the full restart that removes the nodes
        await self._request("PUT", "/_cluster/settings",
                            {"transient": {"cluster.routing.allocation.exclude._name": ",".join(names)}})
        await self._request("POST", f"/_cluster/voting_config_exclusions?node_names={quote(','.join(names))}", None)

    async def shards_only_on(self, names: list[str]) -> int:
        """Shards without a started copy outside `names`: what removing them now would lose."""
        return count_shards_only_on(await self.shard_rows(), names)

    async def clear_exclusions(self) -> None:
        # drained names come back when a cluster grows again; they must hold shards and vote
        await self._request("PUT", "/_cluster/settings",
                            {"transient": {"cluster.routing.allocation.exclude._name": None}})
        await self._request("DELETE", "/_cluster/voting_config_exclusions?wait_for_removal=false", None)

    async def shard_rows(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/_cat/shards?format=json&h=index,shard,prirep,state,node", None)

    async def undrained(self, names: list[str]) -> int:
        """Shards still on `names`, plus any unassigned: a node is drained only when both are 0."""
        rows = await self.shard_rows()
        return sum(1 for r in rows if r.get("node") in names or r["state"] == "UNASSIGNED")

    async def alias_indices(self, alias: str) -> dict[str, bool]:
        """Concrete indices behind `alias` -> whether each takes the writes."""
        body = await self._request("GET", f"/_alias/{alias}", None)
        return {index: bool(entry["aliases"][alias].get("is_write_index")) for index, entry in body.items()}

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

    async def start_copy(self, source: str, target: str) -> str:
        # op_type create: a document written to the new generation meanwhile is newer; keep it
        body = {"conflicts": "proceed", "source": {"index": source}, "dest": {"index": target, "op_type": "create"}}
        answer = await self._request("POST", "/_reindex?wait_for_completion=false&refresh=true", body)
        return answer["task"]

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


def count_shards_only_on(rows: list[dict[str, Any]], leaving: list[str]) -> int:
    """Shards with no started copy outside `leaving`, plus any still relocating (from _cat/shards)."""
    safe: dict[tuple[str, str], bool] = {}
    relocating = 0
    for row in rows:
        key = (row["index"], row["shard"])
        safe.setdefault(key, False)
        if row["state"] == "RELOCATING":
            relocating += 1
        if row["state"] == "STARTED" and row.get("node") not in leaving:
            safe[key] = True
    return relocating + sum(1 for ok in safe.values() if not ok)
