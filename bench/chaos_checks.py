"""The checks at the end of a chaos run, and the split of failed requests by the window they
fell in.

A failed request is excused only by a window of something it needs that was killed on purpose:
an endpoint request by a kill of an engine node of its cluster; an API request by a kill of NATS
or of the manager replica it went to (an API write also by an engine kill, it is forwarded).
Any other failure is counted against the platform: `scaling` if its cluster was scaling at the
time, else `steady`. A request overlapping a window, even by a moment, falls in it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime

from bench.chaos_faults import Window
from bench.chaos_traffic import (
    API_READ, API_SCALE, API_WRITE, ENDPOINT_READ, ENDPOINT_WRITE, INDEX, PATHS, VECTOR_INDEX, ApiPool,
    ChaosCluster, Outcome, endpoint_client,
)
from services.manager.drivers.local_processes import find_engines

EXCUSED_BY = {ENDPOINT_WRITE: ("engine",), ENDPOINT_READ: ("engine",), API_WRITE: ("engine", "nats", "manager"),
              API_READ: ("nats", "manager"), API_SCALE: ("nats", "manager")}
CAUSES = ("engine", "nats", "manager", "scaling", "steady")
UNEXCUSED = ("scaling", "steady")


class Causes:
    """The cause of a request's failure, from the windows of the run (indexed by what they concern)."""

    def __init__(self, windows: list[Window]):
        self._by: dict[tuple[str, str], list[Window]] = {}
        for window in windows:
            self._by.setdefault((window.kind, "" if window.kind == "nats" else window.target), []).append(window)

    def _within(self, kind: str, outcome: Outcome) -> bool:
        key = {"engine": outcome.cluster, "scaling": outcome.cluster, "manager": outcome.replica}.get(kind, "")
        return any(w.overlaps(outcome.start, outcome.end) for w in self._by.get((kind, key), ()))

    def of(self, outcome: Outcome) -> str:
        return next((kind for kind in (*EXCUSED_BY[outcome.path], "scaling") if self._within(kind, outcome)), "steady")


def request_table(outcomes: list[Outcome], windows: list[Window], exempt,
                  started: float) -> tuple[list[str], Counter, list[tuple[Outcome, str]]]:
    """Lines: per path the requests sent, failed, failed by cause, and failed of those sent during
    scaling, with the commonest errors of each cause (when, which cluster and replica); the
    failures by (path, cause); and the unexcused ones with their cause, but for those
    `exempt(outcome, cause)` calls refusals by contract."""
    causes = Causes(windows)
    failed: Counter[tuple[str, str]] = Counter()
    unexcused: list[tuple[Outcome, str]] = []
    errors: dict[tuple[str, str], dict[str, list[Outcome]]] = {}
    sent, during_scaling = Counter(), Counter()
    for outcome in outcomes:
        sent[outcome.path] += 1
        cause = causes.of(outcome)
        during_scaling[outcome.path] += cause == "scaling"
        if outcome.error:
            failed[outcome.path, cause] += 1
            if cause in UNEXCUSED and not exempt(outcome, cause):
                unexcused.append((outcome, cause))
            errors.setdefault((outcome.path, cause), {}).setdefault(outcome.error[:90], []).append(outcome)
    head = f"  {'requests':16} {'sent':>7} {'failed':>7} |" + "".join(f" {c:>8}" for c in CAUSES) + " | during scaling"
    lines = ["failed requests by the window they fell in (engine, nats, manager: killed on purpose; "
             "scaling, steady: nothing of theirs killed):", head]
    for path in PATHS:
        total = sum(failed[path, c] for c in CAUSES)
        lines.append(f"  {path:16} {sent[path]:>7} {total:>7} |" + "".join(f" {failed[path, c]:>8}" for c in CAUSES)
                     + f" | {failed[path, 'scaling']} failed of {during_scaling[path]}")
    for (path, cause), kinds in sorted(errors.items()):
        for error, which in sorted(kinds.items(), key=lambda kv: -len(kv[1]))[:3]:
            where = sorted({f"{o.cluster}{'@' + o.replica if o.replica else ''}" for o in which})
            lines.append(f"    {path}, {cause}: {len(which)} x {error}  [t+{which[0].start - started:.1f}s.."
                         f"t+{which[-1].end - started:.1f}s, {', '.join(where)}]")
    return lines, failed, unexcused


class EngineWatch:
    """Engine processes sampled every second during the run: a twin (two live processes of one
    node of one cluster) is a finding even if it goes away again."""

    def __init__(self, clusters_dir):
        self._dir = clusters_dir
        self.samples = 0
        self.twins: dict[tuple[str, int], list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for key, pids in twins_in(find_engines(self._dir)).items():
                self.twins.setdefault(key, pids)
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def twins_in(engines) -> dict[tuple[str, int], list[int]]:
    by_node: dict[tuple[str, int], list[int]] = {}
    for engine in engines:
        by_node.setdefault((engine.cluster_id, engine.node), []).append(engine.pid)
    return {key: pids for key, pids in by_node.items() if len(pids) > 1}


def _found(endpoint: str, index: str, ids: set[str]) -> set[str]:
    client = endpoint_client(endpoint)
    try:
        client.indices.refresh(index=index, request_timeout=60)
        found: set[str] = set()
        wanted = sorted(ids)
        for i in range(0, len(wanted), 1000):
            chunk = wanted[i:i + 1000]
            answer = client.search(index=index, body={"query": {"ids": {"values": chunk}}, "size": len(chunk),
                                                      "_source": False}, request_timeout=60)
            found |= {hit["_id"] for hit in answer["hits"]["hits"]}
        return found
    finally:
        client.close()


def check_writes(clusters: list[ChaosCluster]) -> tuple[list[str], list[str]]:
    lines, violations, total_lost = [], [], 0
    for path, index in ((ENDPOINT_WRITE, INDEX), (API_WRITE, VECTOR_INDEX)):
        acked = found = 0
        for cluster in clusters:
            ids = cluster.acked[path]
            lost = ids - _found(cluster.endpoint, index, ids)
            acked, found = acked + len(ids), found + len(ids) - len(lost)
            if lost:
                violations.append(f"{cluster.id}: {len(lost)} acknowledged {path}s not found, e.g. {sorted(lost)[:5]}")
        lines.append(f"  {path}s acknowledged {acked}, found {found}, lost {acked - found}")
        total_lost += acked - found
    return [f"LOST ACKNOWLEDGED WRITES: {total_lost}", *lines], violations


def check_sizes(api: ApiPool, clusters: list[ChaosCluster], clusters_dir) -> tuple[list[str], list[str]]:
    """Each cluster ready at the count last asked for, on every manager replica, running exactly
    nodes 1..n; no other engine."""
    lines, violations = [], []
    engines = find_engines(clusters_dir)
    for cluster in clusters:
        views = {name: answer.json() for name, answer in api.each("GET", f"/clusters/{cluster.id}").items()}
        nodes = sorted(e.node for e in engines if e.cluster_id == cluster.id)
        for name, view in views.items():
            lines.append(f"{cluster.id}: asked {cluster.target}; {name} says {view['status']}, nodes {view.get('nodes')}, "
                         f"replicas {view['replicas']}; engine processes of nodes {nodes}")
            if (view["status"], view.get("nodes"), view["replicas"]) != ("ready", cluster.target, cluster.target):
                violations.append(f"{cluster.id}: {name} says {view['status']} with {view.get('nodes')} node(s), "
                                  f"replicas {view['replicas']}, asked {cluster.target}: {view.get('status_reason')}")
        if not cluster.answered:
            violations.append(f"{cluster.id}: the request for {cluster.target} node(s) never got a 202")
    ours = {c.id: c.target for c in clusters}
    orphans = [e for e in engines if e.cluster_id not in ours or e.node > ours[e.cluster_id]]
    twins = twins_in(engines)
    lines.append(f"engine processes: {len(engines)}, orphaned {len(orphans)}, twinned {len(twins)}")
    violations += [f"orphaned engine: cluster {e.cluster_id} node {e.node} pid {e.pid}" for e in orphans]
    violations += [f"twinned engine: cluster {c} node {n} pids {pids}" for (c, n), pids in twins.items()]
    for cluster in clusters:
        nodes = sorted(e.node for e in engines if e.cluster_id == cluster.id)
        if nodes != list(range(1, cluster.target + 1)):
            violations.append(f"{cluster.id}: engine nodes {nodes} running, asked {cluster.target}")
    return lines, violations


def check_statuses(api: ApiPool, clusters: list[ChaosCluster]) -> tuple[list[str], list[str]]:
    """No status back to `requested` after the first `ready`: in the lifecycle events, and as polled."""
    lines, violations = [], []
    for cluster in clusters:
        events = api.request("GET", f"/clusters/{cluster.id}/events", params={"limit": 1000})[0].json()["events"]
        statuses = [e["status"] for e in events if e["kind"] == "status"]
        polled = [s for _, s, _, _, _ in cluster.statuses]
        for source, seen in (("events", statuses), ("polls", polled)):
            after = seen[seen.index("ready"):] if "ready" in seen else []
            if "requested" in after:
                violations.append(f"{cluster.id}: status back to requested after ready in its {source}: {after[:40]}")
        counts = Counter(statuses)
        lines.append(f"{cluster.id}: {len(statuses)} status events ({', '.join(f'{s} {n}' for s, n in counts.items())});"
                     f" {len(polled)} polls, {Counter(polled).get('requested', 0)} of them `requested`")
    return lines, violations


def wait_settled(api: ApiPool, clusters: list[ChaosCluster], clusters_dir, timeout_s: float, tick) -> bool:
    """Until every cluster is ready at its asked count, on every manager replica, with exactly those
    nodes running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tick()
        engines = find_engines(clusters_dir)
        settled = True
        for cluster in clusters:
            try:
                views = [answer.json() for answer in api.each("GET", f"/clusters/{cluster.id}").values()]
            except Exception:
                settled = False
                continue
            nodes = sorted(e.node for e in engines if e.cluster_id == cluster.id)
            settled &= cluster.answered and nodes == list(range(1, cluster.target + 1)) and all(
                view["status"] == "ready" and view.get("nodes") == view["replicas"] == cluster.target for view in views)
        if settled and not twins_in(engines):
            return True
        time.sleep(1)
    return False


def status_story(api: ApiPool, cluster: ChaosCluster, start: float, end: float, started: float,
                 started_wall: float) -> list[str]:
    """Evidence for failures of a cluster between `start` and `end` (monotonic): its status as
    polled (changes only, with the replica that answered) and its status events, stamped t+."""
    lines, last = [f"  {cluster.id}, t+{start - started:.1f}s..t+{end - started:.1f}s, polled:"], None
    for sent, status, nodes, replicas, replica in cluster.statuses:
        if start <= sent <= end and (status, nodes, replicas, replica) != last:
            lines.append(f"    t+{sent - started:.1f}s {status} nodes {nodes} replicas {replicas} @{replica}")
            last = (status, nodes, replicas, replica)
    lines.append("  its status events:")
    events = api.request("GET", f"/clusters/{cluster.id}/events", params={"limit": 1000})[0].json()["events"]
    for event in events:
        at = datetime.fromisoformat(event["occurred_at"]).timestamp() - started_wall
        if event["kind"] == "status" and start - started - 30 <= at <= end - started:
            lines.append(f"    t+{at:.1f}s {event['status']}: {event.get('reason')}")
    return lines
