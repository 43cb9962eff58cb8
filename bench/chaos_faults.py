"""The faults of a chaos run and the windows they open: SIGKILLs of NATS, of each service and of
engine nodes, each followed by the thing coming back; node-count requests; CPU hogs, and how busy
they keep the host.

A kill's window runs from the SIGKILL until what was killed serves again, plus a grace for
clients to reconnect: a service is started again (as an orchestrator would, again and again
until it stays up) and is ready; NATS is back and every service not itself being restarted is
ready again; an engine node runs again (the platform restarts it, never this script) and has
joined its cluster, or is no longer wanted, and the cluster is green or yellow, and then the
platform serves it again (a status poll sent after that says `ready` or `scaling`: the gateway
forwards only then, and a manager killed meanwhile delays it by its lease). A node-count
request opens a scaling window, closed when the cluster is polled `ready` at that count.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx

from bench.chaos_traffic import API_SCALE, ApiPool, ChaosCluster, Recorder
from devrun.nats_server import jetstream_ready
from devrun.supervisor import NATS, Supervisor
from services.manager.drivers.local_launch import node_name
from services.manager.drivers.local_processes import find_engines

GRACE_S = 2.0  # after a thing serves again, for clients to notice
RESTART_GIVE_UP_S = 180.0
# one deck of faults: shuffled, dealt to the end, dealt again, so every kind comes up
DECK = ("engine", "engine", "engine", "manager", NATS, "shard_controller", "reporting", "scale", "scale", "scale")


@dataclass
class Window:
    kind: str  # engine, nats, manager, shard_controller, reporting, scaling
    target: str  # the cluster (engine, scaling), the manager replica, or the service
    start: float
    end: float = math.inf  # inf while open
    note: str = ""

    def overlaps(self, start: float, end: float) -> bool:
        return self.start <= end and start <= self.end


class Timeline:
    """Every window of the run, and a line printed for each fault, stamped from the run's start."""

    def __init__(self, started: float, echo=print):
        self.started = started
        self.windows: list[Window] = []
        self._lock = threading.Lock()
        self._echo = echo

    def say(self, text: str) -> None:
        with self._lock:
            self._echo(f"  t+{time.monotonic() - self.started:6.1f}s  {text}", flush=True)

    def open(self, kind: str, target: str, note: str = "") -> Window:
        window = Window(kind, target, time.monotonic(), note=note)
        with self._lock:
            self.windows.append(window)
        return window

    def close(self, window: Window, at: float) -> None:
        window.end = at


class CpuHogs:
    """Busy loops, one process per core to be taken; stopped by pid. With `seconds` each also ends
    by itself then, so a run killed before its cleanup leaves none behind."""

    def __init__(self, count: int, seconds: float | None = None):
        loop = "while True: pass" if seconds is None else (
            f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass")
        self.processes = [subprocess.Popen([sys.executable, "-c", loop], stdin=subprocess.DEVNULL)
                          for _ in range(count)]

    @property
    def running(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def host_cpu_ticks() -> tuple[int, int]:
    """The host's busy and total CPU ticks since boot, all cores (/proc/stat): two readings give
    how busy the whole machine was between them, whoever kept it busy."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def host_busy_between(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


class Monkey:
    def __init__(self, supervisor: Supervisor, clusters: list[ChaosCluster], api: ApiPool, recorder: Recorder,
                 timeline: Timeline, rng: random.Random, max_nodes: int, recovery_cap_s: float):
        self._sup, self._clusters, self._api, self._recorder = supervisor, clusters, api, recorder
        self._timeline, self._rng, self._max_nodes, self._cap = timeline, rng, max_nodes, recovery_cap_s
        self._downtime = random.Random(rng.random())  # the restart threads' own: `rng` stays the main loop's
        self._busy: set[str] = set()  # what is coming back: not hit again meanwhile
        self._halted = threading.Event()  # the run is over: nothing is started again
        self._threads: list[threading.Thread] = []
        self._deck: list[str] = []
        self._scaling: dict[str, Window] = {}
        self.counts: Counter[str] = Counter()  # what was done, by kind
        self.recoveries: dict[str, list[float]] = {}  # kind -> seconds until it served again
        self.problems: list[str] = []  # things that did not come back, services that died by themselves

    # -- the run's loop calls these ---------------------------------------------------------------
    def step(self) -> None:
        """One fault or node-count request: the next of the deck that can be done now."""
        self._check_exits()
        self.send_unanswered()
        for _ in range(len(DECK)):
            if not self._deck:
                self._deck = list(DECK)
                self._rng.shuffle(self._deck)
            action = self._deck.pop()
            if self._do(action):
                return

    def close_settled(self) -> None:
        """Close a cluster's scaling window at the first of the unbroken run of latest polls saying
        `ready` at the count asked for, once every manager replica says so too (a replica's record
        mirror can lag: one stale answer must not end the window)."""
        for cluster in self._clusters:
            window = self._scaling.get(cluster.id)
            if window is None or not cluster.answered:
                continue
            since = None
            for sent, status, nodes, replicas, _ in reversed(cluster.statuses):
                if sent < window.start or (status, nodes, replicas) != ("ready", cluster.target, cluster.target):
                    break
                since = sent
            if since is not None and self._every_replica_says_ready(cluster):
                self._timeline.close(window, since)
                del self._scaling[cluster.id]

    def _every_replica_says_ready(self, cluster: ChaosCluster) -> bool:
        try:
            views = [answer.json() for answer in self._api.each("GET", f"/clusters/{cluster.id}").values()]
        except (httpx.HTTPError, ValueError):
            return False
        return all((v.get("status"), v.get("nodes"), v.get("replicas")) == ("ready", cluster.target, cluster.target)
                   for v in views)

    def send_unanswered(self) -> None:
        for cluster in self._clusters:
            if not cluster.answered:
                self._ask(cluster, cluster.target, again=True)

    def finish(self) -> None:
        """Wait until everything killed is back (or given up on)."""
        for thread in self._threads:
            thread.join()
        self._check_exits()

    def halt(self) -> None:
        """Start nothing more, and wait for the threads (before the platform is stopped)."""
        self._halted.set()
        for thread in self._threads:
            thread.join()

    # -- faults -------------------------------------------------------------------------------------
    def _do(self, action: str) -> bool:
        if action == "scale":
            cluster = self._rng.choice(self._clusters)
            self._ask(cluster, self._rng.choice([n for n in range(1, self._max_nodes + 1) if n != cluster.target]))
            return True
        if action == "engine":
            return self._kill_engine()
        names = [n for n in self._sup.names if n.startswith(action) and n not in self._busy]
        if action == NATS and len(self._sup.nats) > 1 and any(n in self._busy for n in self._sup.nats):
            return False  # a JetStream cluster loses one server at a time, as its PodDisruptionBudget says
        if not names:
            return False
        self._kill_service(self._rng.choice(names))
        return True

    def _background(self, work, *args) -> None:
        thread = threading.Thread(target=work, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _kill_service(self, name: str) -> None:
        self._busy.add(name)
        kind = kind_of(name)
        window = self._timeline.open(kind, name)  # before the signal: a request failing with it falls in
        pid = self._sup.kill(name)
        self.counts[f"kill {kind}"] += 1
        self._timeline.say(f"SIGKILL {name} (pid {pid})")
        self._background(self._bring_back, name, kind, window)

    def _bring_back(self, name: str, kind: str, window: Window) -> None:
        time.sleep(self._downtime.uniform(0, 3))  # down for a moment, as a rescheduled pod would be
        attempts, deadline = 0, time.monotonic() + RESTART_GIVE_UP_S
        while not self._halted.is_set():
            attempts += 1
            try:
                self._sup.start(name)
                break
            except (RuntimeError, TimeoutError) as exc:
                if self._sup.running(name):
                    self._sup.kill(name)  # started but never ready: an orchestrator replaces it
                if time.monotonic() > deadline:
                    self.problems.append(f"{name} not back within {RESTART_GIVE_UP_S:.0f} s: {str(exc)[-300:]}")
                    self._timeline.say(f"{name} NOT back: given up")
                    return
                self._timeline.say(f"{name} start {attempts} failed ({str(exc).splitlines()[0][:100]}); again in 1 s")
                time.sleep(1)
        else:
            return  # halted
        if name in self._sup.nats and name != NATS:  # a cluster's server: back once it caught up
            try:
                jetstream_ready([self._sup.nats[name]], timeout_s=60)
            except TimeoutError as exc:
                self.problems.append(str(exc))
        if name == NATS:  # back when the services found it again (but those being restarted themselves)
            def others() -> list[str]:
                return [n for n in self._sup.names if n != NATS and n not in self._busy]
            try:
                _wait_for(lambda: all(self._sup.ready(n) for n in others()), 60, "every service ready", self._halted)
            except TimeoutError:
                late = [n for n in others() if not self._sup.ready(n)]
                self.problems.append(f"{', '.join(late)} not ready 60 s after NATS came back")
        took = time.monotonic() - window.start
        self._timeline.close(window, time.monotonic() + GRACE_S)
        self.recoveries.setdefault(kind, []).append(took)
        self._busy.discard(name)
        self._timeline.say(f"{name} back, ready {took:.1f} s after the kill" + (f" ({attempts} starts)" if attempts > 1 else ""))

    def _check_exits(self) -> None:
        """A service that exited by itself (not killed here) is a finding; it is started again."""
        for name in self._sup.names:
            if name not in self._busy and not self._sup.running(name):
                code = (self._sup.nats[name].process if name in self._sup.nats
                        else self._sup.services[name].process).returncode
                self.problems.append(f"{name} exited by itself with code {code} (see logs/{name}.log)")
                self._timeline.say(f"{name} EXITED BY ITSELF (code {code}); starting it again")
                self._busy.add(name)
                window = self._timeline.open(kind_of(name), name, "exited")
                self._background(self._bring_back, name, window.kind, window)

    def _kill_engine(self) -> bool:
        ours = {c.id: c for c in self._clusters}
        engines = [e for e in find_engines(self._sup.state / "clusters")
                   if e.cluster_id in ours and f"{e.cluster_id}/{e.node}" not in self._busy]
        if not engines:
            return False
        engine = self._rng.choice(engines)
        key = f"{engine.cluster_id}/{engine.node}"
        self._busy.add(key)
        window = self._timeline.open("engine", engine.cluster_id, f"node {engine.node}")
        os.kill(engine.pid, signal.SIGKILL)
        self.counts["kill engine node 1" if engine.node == 1 else "kill engine node > 1"] += 1
        self._timeline.say(f"SIGKILL engine {key} (pid {engine.pid})")
        self._background(self._watch_engine, ours[engine.cluster_id], engine.node, engine.pid, key, window)
        return True

    def _watch_engine(self, cluster: ChaosCluster, node: int, pid: int, key: str, window: Window) -> None:
        try:
            _wait_for(lambda: self._engine_back(cluster, node, pid), self._cap, key, self._halted)
            back_at = time.monotonic()
            _wait_for(lambda: any(sent > back_at and status in ("ready", "scaling")
                                  for sent, status, *_ in cluster.statuses[-5:]),
                      max(1.0, window.start + self._cap - back_at), key, self._halted)
        except TimeoutError:
            if self._halted.is_set():
                return
            self._timeline.close(window, window.start + self._cap)
            self._timeline.say(f"engine {key} not serving again within {self._cap:.0f} s")
        else:
            took = time.monotonic() - window.start
            self._timeline.close(window, time.monotonic() + GRACE_S)
            self.recoveries.setdefault("engine", []).append(took)
            self._timeline.say(f"engine {key} serving again {took:.1f} s after the kill")
        self._busy.discard(key)

    def _engine_back(self, cluster: ChaosCluster, node: int, old_pid: int) -> bool:
        """The killed node runs again and has joined (or is no longer wanted), and the cluster
        has every primary (green or yellow)."""
        running = [e for e in find_engines(self._sup.state / "clusters") if e.cluster_id == cluster.id]
        wanted = node <= cluster.target or any(e.node == node for e in running)
        try:
            health = httpx.get(f"{cluster.endpoint}/_cluster/health", timeout=2).json()
            joined = {n["name"] for n in httpx.get(f"{cluster.endpoint}/_cat/nodes?h=name&format=json", timeout=2).json()}
        except (httpx.HTTPError, ValueError, TypeError, KeyError):
            return False
        back = any(e.node == node and e.pid != old_pid for e in running) and node_name(node) in joined
        return (back or not wanted) and health.get("status") in ("green", "yellow")

    # -- node-count requests --------------------------------------------------------------------------
    def _ask(self, cluster: ChaosCluster, nodes: int, again: bool = False) -> None:
        cluster.target, cluster.answered = nodes, False
        if cluster.id not in self._scaling:
            self._scaling[cluster.id] = self._timeline.open("scaling", cluster.id, f"to {nodes}")
        self.counts["node-count request sent again" if again else "node-count request"] += 1
        answer = self._api.timed(self._recorder, API_SCALE, cluster.id, "PATCH", f"/clusters/{cluster.id}",
                                 json={"replicas": nodes}, ok=lambda r: r.status_code == 202)
        cluster.answered = answer is not None
        self._timeline.say(f"{cluster.id}: {nodes} node(s) asked" + ("" if cluster.answered else ", NOT answered 202")
                           + (" (again)" if again else ""))


def kind_of(name: str) -> str:
    """What a killed service is, whichever of its replicas (`manager-a`, `reporting-b`); a NATS
    server keeps its own name."""
    return next((kind for kind in ("manager", "shard_controller", "reporting") if name.startswith(kind)), name)


def _wait_for(check, timeout_s: float, what: str, halted: threading.Event) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline or halted.is_set():
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.5)
