"""What the kubernetes driver's tests share: a fake engine that can stop answering, records
and settings, the driver as a given identity, the provisioner on an in-memory store, and
waiting for what a real cluster does in its own time."""

from __future__ import annotations

import asyncio

import elastic_transport
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from libs.common.engines import ClusterHealth
from libs.common.metrics import ClusterStats
from libs.common.models import ClusterRecord, ClusterSpec
from libs.common.store import RecordGone
from services.manager.drivers.kubernetes import KubernetesDriver
from services.manager.provisioner import Provisioner
from services.manager.settings import ManagerSettings
from tests.kube_cluster import ControlPlane


class FakeEngine:
    """Answers the engine calls the manager makes: health, drain, lifting a drain, the flush and
    store size before a hibernation. Unreachable, it fails as the real client does."""

    def __init__(self):
        self.status, self.shards_left, self.reachable = "green", 0, True
        self.excluded: list[list[str]] = []
        self.lifted = self.flushed = 0
        self.store_bytes = 4096

    def connect(self, engine: str, endpoint: str, username: str | None, password: str | None) -> FakeEngine:
        return self

    def _answer(self) -> None:
        if not self.reachable:
            # as the real client says it: "Connection error caused by: OSError([Errno -2] Name or ...)"
            raise elastic_transport.ConnectionError("Cannot connect to host",
                                                    errors=(OSError(-2, "Name or service not known"),))

    async def health(self) -> ClusterHealth:
        self._answer()
        return ClusterHealth(self.status, 0)

    async def exclude_nodes(self, names: list[str]) -> None:
        self._answer()
        self.excluded.append(list(names))

    async def drain_pending(self, names: list[str], remaining: int) -> int:
        self._answer()
        return self.shards_left

    async def clear_exclusions(self) -> None:
        self._answer()
        self.lifted += 1

    async def flush(self) -> None:
        self._answer()
        self.flushed += 1

    async def stats(self) -> ClusterStats:
        self._answer()
        return ClusterStats(health=self.status, nodes=1, store_bytes=self.store_bytes)

    def admin(self) -> FakeEngine:
        return self

    async def close(self) -> None:
        pass


def settings(**overrides) -> ManagerSettings:
    base = {"image_registry": "", "image_pull_secrets": [], "storage_class": None, "kube_delete_timeout_s": 60.0,
            "provision_timeout_s": 120.0}
    return ManagerSettings(**{**base, **overrides})


def record(cluster_id: str, replicas: int = 1, engine: str = "elasticsearch") -> ClusterRecord:
    return ClusterRecord(
        id=cluster_id, tenant_org_id="acme", user="alice", service_name="search",
        spec=ClusterSpec(replicas=replicas, cpu="500m", memory="1Gi", storage="5Gi", engine=engine,
                         version={"elasticsearch": "8.15.3", "opensearch": "2.19.1"}[engine]),
    )


def make_driver(plane: ControlPlane, token: str, engine: FakeEngine, **overrides) -> KubernetesDriver:
    return KubernetesDriver(settings(**overrides), api=plane.api_client(token), connect=engine.connect)


def requests_of(driver: KubernetesDriver) -> list[tuple[str, str]]:
    """From now on, (method, URL) of every request the driver sends to the API server."""
    sent: list[tuple[str, str]] = []
    rest = driver._apis["core"].api_client.rest_client
    original = rest.request

    def recorded(method, url, *args, **kwargs):
        sent.append((method, url))
        return original(method, url, *args, **kwargs)

    rest.request = recorded
    return sent


class Admin:
    """What an operator with kubectl sees."""

    def __init__(self, plane: ControlPlane):
        api = plane.admin()
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)

    def statefulset(self, namespace: str) -> client.V1StatefulSet:
        return self.apps.read_namespaced_stateful_set("engine", namespace)

    def terminating(self, namespace: str) -> bool:
        try:
            return self.core.read_namespace(namespace).metadata.deletion_timestamp is not None
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def namespace_exists(self, namespace: str) -> bool:
        try:
            self.core.read_namespace(namespace)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise


async def until(check, what: str, timeout_s: float = 60.0):
    """Poll `check` (sync or async) until it returns something true; fail naming `what`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.2)


async def ready_observation(driver: KubernetesDriver, cluster_id: str, nodes: int):
    async def check():
        observed = await driver.observe(cluster_id)
        return observed if observed.nodes == nodes and observed.health else None
    return await until(check, f"{nodes} pod(s) of {cluster_id} ready", timeout_s=120)


class RecordsInMemory:
    """The ClusterStore calls the provisioner makes, on a dict instead of JetStream KV."""

    def __init__(self, *records: ClusterRecord):
        self.records = {r.id: r for r in records}

    async def get(self, cluster_id: str):
        found = self.records.get(cluster_id)
        return (found.model_copy(deep=True), 1) if found else None

    async def list(self) -> list[ClusterRecord]:
        return [r.model_copy(deep=True) for r in self.records.values()]

    async def read_all(self) -> list[ClusterRecord]:
        return await self.list()

    async def mutate(self, cluster_id: str, change):
        if cluster_id not in self.records:
            raise RecordGone(cluster_id)
        updated = change(self.records[cluster_id].model_copy(deep=True))
        if updated is not None:
            self.records[cluster_id] = updated
        return updated

    async def remove(self, record: ClusterRecord) -> None:
        self.records.pop(record.id, None)

    async def release_name(self, record: ClusterRecord) -> None:
        pass  # no names kept here


async def publish_nowhere(event, subject) -> None:
    pass


async def reconcile_until(provisioner: Provisioner, store: RecordsInMemory, cluster_id: str, done, what: str,
                          timeout_s: float = 120.0) -> ClusterRecord:
    async def step():
        await provisioner.reconcile(cluster_id)
        current = store.records.get(cluster_id)
        return current if done(current) else None
    return await until(step, what, timeout_s)
