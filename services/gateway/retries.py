"""When the gateway sends a read to the engine again: a pure decision over the engine's answer.

An engine loses in-flight searches when a shard copy goes away under them: a node stopping at
the end of a scale-in's drain (its copies were on the search's list; the fetch phase has no
other copy to turn to), a relocated copy closing, a node crash. The engine answers 500/503, or
200 with some shards failed. Such an answer to a call that changes nothing (`api_policy.is_read`)
is sent again after a short pause, a few times; any other answer goes back to the client as it
is. The byte pump gets the same types and pauses from here (`pump_args`), so it decides alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

# the engines' names for "the copy or node you were sent to is gone": a moment of the cluster's
# own topology changing, not anything about the request
TRANSIENT_ERRORS = frozenset({
    "node_not_connected_exception", "node_disconnected_exception", "node_closed_exception",
    "connect_transport_exception", "send_request_transport_exception", "no_shard_available_action_exception",
    "search_context_missing_exception", "shard_not_found_exception", "index_shard_closed_exception",
    "illegal_index_shard_state_exception", "already_closed_exception",
})
PAUSES_S = (0.1, 0.25, 0.5, 1.0)  # long enough for the cluster to let a stopped node go
RETRIED_STATUSES = frozenset({500, 503})
CHECKED_BYTES = 1 << 20  # larger answers are not searched for failures (and are not partial failures)
# a search answer opens with `_shards`; only an answer with failed shards is read further
PARTIAL = re.compile(rb'"_shards"\s*:\s*\{[^}]*"failed"\s*:\s*[1-9]')
HEAD = 512
SCROLL = re.compile(r"(?:^|&)scroll=")  # a search that opens a scroll context: each send would open another


def may_send_again(read: bool, query: str) -> bool:
    """A read may be sent again, unless it opens a scroll (sent twice, it leaves a context open)."""
    return read and SCROLL.search(query) is None


def transient_failure(status: int, encoding: str | None, payload: bytes) -> str | None:
    """The transient error type that failed this answer (send again), or None (answer as it is)."""
    if encoding or len(payload) > CHECKED_BYTES:
        return None  # compressed or large: passed on as is
    if status not in RETRIED_STATUSES and not (status == 200 and PARTIAL.search(payload[:HEAD])):
        return None
    try:
        answer = json.loads(payload)
    except ValueError:
        return None
    return next((kind for kind in _types(answer) if kind in TRANSIENT_ERRORS), None)


def _types(value: object) -> Iterator[str]:
    """Every error `type` in an answer: its error, root causes, caused-by chain, shard failures."""
    if isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str):
            yield kind
        for inner in value.values():
            yield from _types(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _types(inner)


def pump_args() -> list[str]:
    """The same decision's terms for the byte pump."""
    return [f"-retry-errors={','.join(sorted(TRANSIENT_ERRORS))}",
            f"-retry-pauses={','.join(f'{int(p * 1000)}ms' for p in PAUSES_S)}"]
