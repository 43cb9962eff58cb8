"""A reshard's copy on an engine without `_reindex` (the local Elasticsearch core server):
pages of the source read in one point in time with search_after, written to the target with
bulk `create`, so a document written to the new generation meanwhile (newer) is kept.

A copy advances a bounded number of pages per step and its whole progress is the task id
(`paged:` + JSON: point in time, cursor, indices), which the shard controller stores with its
operation: it never blocks on a long copy, and a restarted controller resumes where it was.
Speaks Elasticsearch's point-in-time API (`/{index}/_pit`), the one engine that needs it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

PREFIX = "paged:"
PAGE_SIZE = 500
PAGES_PER_STEP = 10
KEEP_ALIVE = "10m"  # spans the controller's samples between two steps

Request = Callable[[str, str, Any], Awaitable[Any]]


class PagedCopyFailed(Exception):
    """The target refused documents for another reason than already holding them."""


def is_paged(task_id: str) -> bool:
    return task_id.startswith(PREFIX)


async def start_paged_copy(request: Request, source: str, target: str) -> str:
    answer = await request("POST", f"/{source}/_pit?keep_alive={KEEP_ALIVE}", None)
    return PREFIX + json.dumps({"pit": answer["id"], "after": None, "source": source, "target": target})


async def paged_copy_step(request: Request, task_id: str) -> tuple[bool, str]:
    """Copy up to PAGES_PER_STEP pages; (done, the task id to resume from)."""
    task = json.loads(task_id.removeprefix(PREFIX))
    for _ in range(PAGES_PER_STEP):
        body: dict[str, Any] = {"size": PAGE_SIZE, "pit": {"id": task["pit"], "keep_alive": KEEP_ALIVE},
                                "sort": ["_shard_doc"], "track_total_hits": False}
        if task["after"] is not None:
            body["search_after"] = task["after"]
        page = await request("POST", "/_search", body)
        task["pit"] = page.get("pit_id", task["pit"])
        hits = page["hits"]["hits"]
        if not hits:
            await request("DELETE", "/_pit", {"id": task["pit"]})
            return True, PREFIX + json.dumps(task)
        await _create_all(request, task["target"], hits)
        task["after"] = hits[-1]["sort"]
    return False, PREFIX + json.dumps(task)


async def _create_all(request: Request, target: str, hits: list[dict[str, Any]]) -> None:
    lines: list[dict[str, Any]] = []
    for hit in hits:
        lines += [{"create": {"_index": target, "_id": hit["_id"]}}, hit["_source"]]
    answer = await request("POST", "/_bulk", lines)  # a list body goes as NDJSON
    refused = [item["create"]["error"] for item in answer["items"]
               if item["create"].get("status", 201) >= 300 and item["create"]["status"] != 409]
    if refused:
        raise PagedCopyFailed(f"{len(refused)} documents refused, e.g. {refused[0]}")
