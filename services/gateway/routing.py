"""Pure decisions of the gateway: which cluster a path addresses, whether the caller may reach
it, and what to do with the request: forward it, hold it while the cluster wakes, or refuse it.

Addressing is a path prefix, `<gateway>/<cluster id>/<engine path>`, because the official
clients take a path prefix in their host URL unchanged (no DNS needed, unlike a host per cluster).
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass

from libs.common.api_keys import Principal
from libs.common.models import SERVING, ClusterRecord, ClusterStatus, waits_its_turn

CLUSTER_PATH = re.compile(r"^/(c[0-9a-f]{12})(/.*)?$")


def split_path(raw_path: str) -> tuple[str, str] | None:
    """(cluster id, the engine's path with its query) of `/<cluster id>/<path>`, else None."""
    path, _, query = raw_path.partition("?")
    match = CLUSTER_PATH.match(path)
    if match is None:
        return None
    rest = match.group(2) or "/"
    return match.group(1), rest + (f"?{query}" if query else "")


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def engine_user(record: ClusterRecord, credentials: tuple[str, str]) -> Principal | None:
    """HTTP basic with the cluster's own engine credentials (where its engine has them)."""
    known = record.credentials
    if known is None:
        return None
    user_ok = hmac.compare_digest(credentials[0].encode(), known.username.encode())
    password_ok = hmac.compare_digest(credentials[1].encode(), known.password.encode())
    return Principal(f"engine-user:{known.username}", record.tenant_org_id) if user_ok and password_ok else None


@dataclass(frozen=True)
class Forward:
    endpoint: str


@dataclass(frozen=True)
class Hold:
    """Hibernated (or on its way): wake it and hold the request until the engine answers."""

    reason: str
    ask_to_wake: bool = True  # False: waking already, only wait


@dataclass(frozen=True)
class Refuse:
    status: int
    kind: str
    reason: str
    retry_after_s: int | None = None


Decision = Forward | Hold | Refuse


def decide(record: ClusterRecord | None, principal: Principal, cluster_id: str) -> Decision:
    if record is None or not principal.may_see(record.tenant_org_id):
        # another tenant's cluster looks exactly like one that does not exist
        return Refuse(404, "cluster_not_found", f"no cluster {cluster_id}")
    if record.delete_requested:
        return Refuse(404, "cluster_not_found", f"cluster {cluster_id} is being deleted")
    if record.hibernate_requested or record.status == ClusterStatus.HIBERNATED:
        return Hold(f"a request for cluster {cluster_id} ({record.status})")
    if record.status in (ClusterStatus.WAKING, ClusterStatus.HIBERNATING):
        return Hold(f"cluster {cluster_id} is {record.status}; held until it is ready", ask_to_wake=False)
    if record.status in SERVING and record.endpoint:
        return Forward(record.endpoint)
    if record.status == ClusterStatus.FAILED:
        return Refuse(503, "cluster_failed", f"cluster {cluster_id} failed: {record.status_reason}")
    return Refuse(503, "cluster_not_ready", f"cluster {cluster_id} is {record.status}; retry shortly", 5)


def hold_deadline(deadline: float, now: float, arrived: float, record: ClusterRecord, wake_timeout_s: float,
                  queued_max_s: float) -> float:
    """When a held request gives up: `wake_timeout_s` after it arrived or after its cluster's
    start was last seen waiting its turn (a queue that moves is no failed wake), but never later
    than `queued_max_s` after it arrived for the queue's sake."""
    if not waits_its_turn(record):
        return deadline
    return max(deadline, min(now + wake_timeout_s, arrived + queued_max_s))
