"""The kubernetes driver, with the real `kubernetes` client, against kmock's HTTP API emulator.

A tenant cluster is created, checked field by field as it arrived at the API, re-applied
unchanged (nothing written), scaled 1 -> 3 -> 2 (only what changed is patched, nodes are
drained first), and deleted (its namespace goes, and the driver waits for that); the
provisioner takes one to ready; the RBAC of deploy/kubernetes is held to the requests made.
The engine is a fake with the few calls the driver makes of it; no engine runs.
"""

from __future__ import annotations

import asyncio
import base64
import re

import kmock
import pytest
import structlog
from kubernetes import client

from libs.common.engines import ClusterHealth
from libs.common.models import ClusterRecord, ClusterSpec, ClusterStatus
from libs.common.quantities import parse_bytes
from libs.common.settings import Settings
from libs.common.store import RecordGone
from services.manager.drivers import ResizeInProgress, EngineUnavailable
from services.manager.drivers.kubernetes import KubernetesDriver
from services.manager.drivers.kubernetes_rules import pod_selector
from services.manager.provisioner import Provisioner
from tests.kube_api import ApiServer, namespace_paths

NS = "ess-c0a1b2c3d4e5f"
STATEFULSETS, QUOTAS = "apps/v1/statefulsets", "v1/resourcequotas"
WRITES = {"PATCH", "POST", "PUT", "DELETE"}
EVERY_OBJECT = {
    ("namespaces", NS), ("secrets", "engine-credentials"), ("secrets", "engine-transport-tls"),
    ("resourcequotas", "engine"), ("limitranges", "engine"), ("networkpolicies", "engine"),
    ("services", "engine-nodes"), ("services", "engine"), ("poddisruptionbudgets", "engine"),
    ("statefulsets", "engine"),
}


class FakeEngine:
    """Answers the engine calls the driver makes: health, drain, and lifting a drain."""

    def __init__(self):
        self.status, self.shards_left, self.reachable = "green", 0, True
        self.excluded: list[list[str]] = []
        self.lifted = 0
        self.dialled: list[tuple[str, str, str | None]] = []
        self.passwords: list[tuple[str, str]] = []

    def connect(self, engine: str, endpoint: str, username: str | None, password: str | None) -> FakeEngine:
        self.dialled.append((engine, endpoint, username))
        return self

    async def health(self) -> ClusterHealth:
        if not self.reachable:
            raise ConnectionError("name does not resolve outside the cluster")
        return ClusterHealth(self.status, 0)

    async def exclude_nodes(self, names: list[str]) -> None:
        self.excluded.append(list(names))

    async def drain_pending(self, names: list[str], remaining: int) -> int:
        return self.shards_left

    async def clear_exclusions(self) -> None:
        self.lifted += 1

    def admin(self) -> "FakeEngine":  # the admin operations live on the same fake
        return self

    async def change_password(self, current: str, new: str) -> None:
        self.passwords.append((current, new))

    async def close(self) -> None:
        pass


def platform_settings(**overrides) -> Settings:
    base = {"image_registry": "", "image_pull_secrets": [], "storage_class": None,
            "kube_platform_namespace": "es-serverless", "kube_namespace_prefix": "ess-",
            "kube_cluster_domain": "cluster.local", "kube_delete_timeout_s": 10.0}
    return Settings(**{**base, **overrides})


def record(replicas=1, memory="1Gi", engine="elasticsearch") -> ClusterRecord:
    return ClusterRecord(
        id="c0a1b2c3d4e5f", tenant_org_id="acme", user="alice", service_name="search",
        spec=ClusterSpec(replicas=replicas, cpu="500m", memory=memory, storage="5Gi", engine=engine,
                         version={"elasticsearch": "8.15.3", "opensearch": "2.19.1"}[engine]),
    )


@pytest.fixture
async def api_server(monkeypatch):
    namespace_paths(monkeypatch)
    async with ApiServer() as server, kmock.Server(server):
        yield server


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def make_driver(api_server: ApiServer, engine: FakeEngine, **overrides) -> KubernetesDriver:
    api = client.ApiClient(client.Configuration(host=str(api_server.url).rstrip("/")))
    return KubernetesDriver(platform_settings(**overrides), api=api, connect=engine.connect)


@pytest.fixture
def driver(api_server, engine) -> KubernetesDriver:
    return make_driver(api_server, engine)


def requests_since(api_server: ApiServer, mark: int) -> list[kmock.Request]:
    return list(api_server)[mark:]


def written(api_server: ApiServer, mark: int) -> set[tuple[str, str]]:
    """(resource, name) of every request after `mark` that could change something."""
    return {(r.resource.plural, r.name) for r in requests_since(api_server, mark) if r.method.value in WRITES}


def versions(api_server: ApiServer) -> dict[tuple[str, str], tuple[str, int]]:
    """resourceVersion and length of history of every live object."""
    return {(key[0].plural, key[2]): (obj.raw["metadata"].get("resourceVersion"), len(obj.history))
            for key, obj in api_server.objects.items() if not obj.deleted}


def roll_out(api_server: ApiServer, ready: int | None = None) -> None:
    """What the StatefulSet controller reports once every pod runs the current spec."""
    statefulset = api_server.live(STATEFULSETS, NS, "engine")
    replicas = statefulset["spec"]["replicas"]
    api_server.set_status(STATEFULSETS, NS, "engine", {
        "observedGeneration": statefulset["metadata"]["generation"], "replicas": replicas,
        "updatedReplicas": replicas, "readyReplicas": replicas if ready is None else ready,
    })


def container(api_server: ApiServer) -> dict:
    return api_server.live(STATEFULSETS, NS, "engine")["spec"]["template"]["spec"]["containers"][0]


# -- create -------------------------------------------------------------------------------
async def test_create_applies_every_object_with_server_side_apply_as_es_serverless(driver, api_server):
    endpoint = await driver.start(record(), driver.size_for(record().spec))

    assert endpoint == f"http://engine.{NS}.svc.cluster.local:9200"
    patches = [r for r in api_server if r.method.value == "PATCH"]
    assert {(r.resource.plural, r.name) for r in patches} == EVERY_OBJECT
    for request in patches:
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        assert request.params == {"fieldManager": "es-serverless", "force": "true"}
    assert not [r for r in api_server if r.method.value in {"POST", "PUT"}], "apply creates; nothing else does"
    assert [r.resource.plural for r in patches][0] == "namespaces"
    assert [r.resource.plural for r in patches][-1] == "statefulsets"


async def test_objects_at_the_api_carry_the_spec_field_by_field(driver, api_server):
    cluster = record(replicas=1, memory="1Gi")
    await driver.start(cluster, driver.size_for(cluster.spec))

    namespace = api_server.live("v1/namespaces", None, NS)
    assert namespace["metadata"]["labels"].items() >= {
        "es-serverless.io/tenant": "acme", "es-serverless.io/cluster": "c0a1b2c3d4e5f",
        "es-serverless.io/service": "search", "app.kubernetes.io/managed-by": "es-serverless"}.items()

    statefulset = api_server.live(STATEFULSETS, NS, "engine")
    engine_container = container(api_server)
    assert statefulset["spec"]["replicas"] == 1
    assert engine_container["image"] == "docker.elastic.co/elasticsearch/elasticsearch:8.15.3"
    assert engine_container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                             "limits": {"cpu": "500m", "memory": "1Gi"}}
    env = {e["name"]: e.get("value") for e in engine_container["env"]}
    heap = int(re.search(r"-Xmx(\d+)m", env["ES_JAVA_OPTS"]).group(1))
    assert heap == 512 and heap * 2**20 <= parse_bytes("1Gi") / 2
    claim = statefulset["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "5Gi" and claim["accessModes"] == ["ReadWriteOnce"]
    assert statefulset["spec"]["template"]["metadata"]["labels"]["es-serverless.io/tenant"] == "acme"

    hard = api_server.live(QUOTAS, NS, "engine")["spec"]["hard"]
    assert (hard["pods"], hard["limits.cpu"], hard["limits.memory"], hard["requests.storage"]) == \
        ("1", "500m", "1Gi", "5Gi")
    limits = api_server.live("v1/limitranges", NS, "engine")["spec"]["limits"][0]
    assert limits["max"] == {"cpu": "500m", "memory": "1Gi"}

    policy = api_server.live("networking.k8s.io/v1/networkpolicies", NS, "engine")["spec"]
    assert policy["podSelector"]["matchLabels"] == pod_selector(cluster)
    sources = [peer["namespaceSelector"]["matchLabels"] for peer in policy["ingress"][0]["from"]]
    assert sources == [{"kubernetes.io/metadata.name": "es-serverless"}, {"es-serverless.io/tenant": "acme"}]
    assert policy["ingress"][1]["from"] == [{"podSelector": {"matchLabels": pod_selector(cluster)}}]

    assert api_server.live("policy/v1/poddisruptionbudgets", NS, "engine")["spec"]["maxUnavailable"] == 1
    assert api_server.live("v1/services", NS, "engine-nodes")["spec"]["clusterIP"] == "None"

    credentials = api_server.live("v1/secrets", NS, "engine-credentials")["data"]
    assert base64.b64decode(credentials["username"]).decode() == "elastic"
    assert len(base64.b64decode(credentials["password"]).decode()) == 24
    tls = api_server.live("v1/secrets", NS, "engine-transport-tls")
    assert tls["type"] == "kubernetes.io/tls" and set(tls["data"]) == {"ca.crt", "tls.crt", "tls.key"}


async def test_opensearch_is_selected_by_the_records_engine(driver, api_server):
    cluster = record(engine="opensearch")
    await driver.start(cluster, driver.size_for(cluster.spec))
    assert container(api_server)["image"] == "docker.io/opensearchproject/opensearch:2.19.1"
    assert api_server.live("v1/secrets", NS, "engine-transport-tls") is None
    credentials = api_server.live("v1/secrets", NS, "engine-credentials")["data"]
    assert base64.b64decode(credentials["username"]).decode() == "admin"


# -- re-apply, scale, delete ------------------------------------------------------------
async def test_reapplying_an_unchanged_spec_writes_nothing(driver, api_server):
    cluster = record()
    await driver.start(cluster, driver.size_for(cluster.spec))
    before, mark = versions(api_server), len(api_server)

    await driver.start(cluster, driver.size_for(cluster.spec))
    await driver.resize(cluster, driver.size_for(cluster.spec), driver.size_for(cluster.spec))

    assert written(api_server, mark) == set()
    assert {r.method.value for r in requests_since(api_server, mark)} == {"GET"}
    assert versions(api_server) == before


async def test_a_cluster_is_created_scaled_1_3_2_reapplied_and_deleted(driver, api_server, engine):
    one, three, two = record(replicas=1), record(replicas=3), record(replicas=2)
    await driver.start(one, driver.size_for(one.spec))
    roll_out(api_server)
    assert (await driver.observe(one.id)).nodes == 1
    password = base64.b64decode(api_server.live("v1/secrets", NS, "engine-credentials")["data"]["password"])

    mark = len(api_server)
    await driver.resize(three, driver.size_for(one.spec), driver.size_for(three.spec))
    assert written(api_server, mark) == {("resourcequotas", "engine"), ("statefulsets", "engine")}
    assert api_server.live(STATEFULSETS, NS, "engine")["spec"]["replicas"] == 3
    assert api_server.live(QUOTAS, NS, "engine")["spec"]["hard"]["pods"] == "3"
    assert api_server.live(QUOTAS, NS, "engine")["spec"]["hard"]["limits.memory"] == "3Gi"
    assert engine.lifted == 1, "nodes drained by an earlier shrink are let in again"
    roll_out(api_server)
    observed = await driver.observe(three.id)
    assert (observed.size.nodes, observed.nodes, observed.health) == (3, 3, "green")

    mark = len(api_server)
    await driver.resize(two, driver.size_for(three.spec), driver.size_for(two.spec))
    assert engine.excluded == [["engine-2"]], "the node that goes away is drained first"
    assert written(api_server, mark) == {("statefulsets", "engine")}
    assert api_server.live(STATEFULSETS, NS, "engine")["spec"]["replicas"] == 2
    # the quota shrinks once the pods have: until then pods of both sizes must fit
    assert api_server.live(QUOTAS, NS, "engine")["spec"]["hard"]["pods"] == "3"
    roll_out(api_server)
    observed = await driver.observe(two.id)
    assert (observed.size.nodes, observed.nodes) == (2, 2)
    assert api_server.live(QUOTAS, NS, "engine")["spec"]["hard"]["pods"] == "2"
    assert engine.lifted == 2, "once the drained pod is gone, its exclusions are lifted by the driver"

    before, mark = versions(api_server), len(api_server)
    await driver.start(two, driver.size_for(two.spec))
    await driver.observe(two.id)
    assert written(api_server, mark) == set() and versions(api_server) == before
    assert base64.b64decode(api_server.live("v1/secrets", NS, "engine-credentials")["data"]["password"]) == password

    await driver.remove(two.id)
    assert api_server.live("v1/namespaces", None, NS) is None
    assert api_server.live(STATEFULSETS, NS, "engine") is None
    assert not (await driver.observe(two.id)).running
    assert await driver.orphans(set()) == set()


async def test_scaling_in_waits_until_no_shard_lives_only_on_the_leaving_node(driver, api_server, engine):
    three, two = record(replicas=3), record(replicas=2)
    await driver.start(three, driver.size_for(three.spec))
    engine.shards_left, mark = 4, len(api_server)

    with pytest.raises(ResizeInProgress, match="engine-2: 4 shard"):
        await driver.resize(two, driver.size_for(three.spec), driver.size_for(two.spec))
    assert written(api_server, mark) == set()
    assert api_server.live(STATEFULSETS, NS, "engine")["spec"]["replicas"] == 3

    engine.reachable = False
    engine.shards_left = 0

    async def unreachable(names, remaining):
        raise ConnectionError("no route to the engine")

    engine.drain_pending = unreachable
    with pytest.raises(ResizeInProgress, match="not reachable"):
        await driver.resize(two, driver.size_for(three.spec), driver.size_for(two.spec))
    assert api_server.live(STATEFULSETS, NS, "engine")["spec"]["replicas"] == 3


async def test_a_smaller_memory_rolls_pods_under_a_quota_that_settles_afterwards(driver, api_server):
    big, small = record(replicas=3, memory="2Gi"), record(replicas=3, memory="1Gi")
    await driver.start(big, driver.size_for(big.spec))
    roll_out(api_server)
    mark = len(api_server)

    await driver.resize(small, driver.size_for(big.spec), driver.size_for(small.spec))

    assert ("limitranges", "engine") in written(api_server, mark)
    assert {e["name"]: e.get("value") for e in container(api_server)["env"]}["ES_JAVA_OPTS"] == "-Xms512m -Xmx512m"
    assert api_server.live(QUOTAS, NS, "engine")["spec"]["hard"]["limits.memory"] == "6Gi"
    assert (await driver.observe(small.id)).health is None, "pods of the old size still run"
    roll_out(api_server)
    assert (await driver.observe(small.id)).health == "green"
    assert api_server.live(QUOTAS, NS, "engine")["spec"]["hard"]["limits.memory"] == "3Gi"


# -- observe ------------------------------------------------------------------------------
async def test_ready_comes_from_the_statefulset_and_health_from_the_engine(driver, api_server, engine):
    cluster = record(replicas=3)
    assert not (await driver.observe(cluster.id)).running
    await driver.start(cluster, driver.size_for(cluster.spec))

    starting = await driver.observe(cluster.id)
    assert starting.running and starting.health is None and starting.nodes == 0
    assert starting.size == driver.size_for(cluster.spec)

    roll_out(api_server, ready=2)
    assert (await driver.observe(cluster.id)).health is None
    roll_out(api_server)
    engine.status = "yellow"
    ready = await driver.observe(cluster.id)
    assert (ready.health, ready.nodes) == ("yellow", 3)
    assert ready.endpoint == f"http://engine.{NS}.svc.cluster.local:9200"
    secret = api_server.live("v1/secrets", NS, "engine-credentials")["data"]
    assert ready.credentials.password == base64.b64decode(secret["password"]).decode()
    assert engine.dialled[-1] == ("elasticsearch", ready.endpoint, "elastic")

    engine.reachable = False  # the manager runs outside the cluster: the probes vouch for yellow
    assert (await driver.observe(cluster.id)).health == "yellow"


# -- delete and orphans -------------------------------------------------------------------
async def test_rotating_credentials_changes_the_engine_first_then_the_secret(driver, api_server, engine):
    cluster = record(replicas=1)
    await driver.start(cluster, driver.size_for(cluster.spec))
    roll_out(api_server)
    def stored() -> str:
        return base64.b64decode(api_server.live("v1/secrets", NS, "engine-credentials")["data"]["password"]).decode()

    old = stored()
    rotated = await driver.rotate_credentials(cluster)
    assert engine.passwords == [(old, rotated.password)]  # the old password authenticated the change
    assert rotated.password != old and len(rotated.password) == 24
    assert stored() == rotated.password
    assert (await driver.observe(cluster.id)).credentials == rotated


async def test_remove_waits_for_a_terminating_namespace_to_go(driver, api_server):
    cluster = record()
    await driver.start(cluster, driver.size_for(cluster.spec))
    api_server.objects["v1/namespaces", None, NS].patch({"metadata": {"finalizers": ["kubernetes"]}})

    removal = asyncio.create_task(driver.remove(cluster.id))
    await asyncio.sleep(1.5)
    assert not removal.done(), "returned while the namespace still terminates"
    assert api_server.live("v1/namespaces", None, NS)["metadata"].get("deletionTimestamp")
    assert cluster.id not in await driver.orphans(set()), "a namespace already going is not deleted again"

    api_server.finish_terminating(NS)
    await asyncio.wait_for(removal, 5)
    assert api_server.live("v1/namespaces", None, NS) is None


async def test_removing_a_cluster_that_is_gone_is_a_no_op(driver, api_server):
    await driver.remove("c0a1b2c3d4e5f")
    assert [r.method.value for r in api_server] == ["GET"]


async def test_orphans_are_our_namespaces_without_a_record_and_never_anyone_elses(driver, api_server):
    cluster = record()
    await driver.start(cluster, driver.size_for(cluster.spec))
    api_server.objects["v1/namespaces", None, "ess-cforeign"] = {
        "metadata": {"name": "ess-cforeign", "labels": {"es-serverless.io/cluster": "cforeign"}}}
    api_server.objects["v1/namespaces", None, "kube-system"] = {"metadata": {"name": "kube-system"}}

    assert await driver.orphans({cluster.id}) == set()
    assert await driver.orphans(set()) == {cluster.id}
    list_request = [r for r in api_server if r.resource.plural == "namespaces" and r.name is None][-1]
    assert list_request.params["labelSelector"] == "app.kubernetes.io/managed-by=es-serverless,es-serverless.io/cluster"

    await driver.remove("cforeign")
    assert api_server.live("v1/namespaces", None, "ess-cforeign") is not None, "not ours: never deleted"


# -- refusals, pull secrets, secrets in logs ---------------------------------------------
async def test_a_refusal_by_the_api_is_a_permanent_failure_that_names_the_fix(driver, api_server):
    api_server["patch", kmock.resource(STATEFULSETS)] << kmock.KubernetesError(
        status=403, reason="Forbidden", message='statefulsets.apps "engine" is forbidden')
    with pytest.raises(EngineUnavailable, match=r"403 .*forbidden.*rbac\.yaml"):
        await driver.start(record(), driver.size_for(record().spec))


async def test_pull_secrets_are_copied_from_the_platform_namespace(api_server, engine):
    api_server.objects["v1/secrets", "es-serverless", "regcred"] = {
        "metadata": {"name": "regcred", "namespace": "es-serverless"},
        "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}
    driver = make_driver(api_server, engine, image_pull_secrets=["regcred"], image_registry="mirror.corp:5000")
    await driver.start(record(), driver.size_for(record().spec))

    copied = api_server.live("v1/secrets", NS, "regcred")
    assert copied["data"] == {".dockerconfigjson": "e30="} and copied["type"] == "kubernetes.io/dockerconfigjson"
    pod = api_server.live(STATEFULSETS, NS, "engine")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["containers"][0]["image"] == "mirror.corp:5000/elasticsearch/elasticsearch:8.15.3"

    missing = make_driver(api_server, engine, image_pull_secrets=["absent"])
    with pytest.raises(EngineUnavailable, match="'absent' not found in namespace es-serverless"):
        await missing.start(record(), missing.size_for(record().spec))


async def test_generated_credentials_never_reach_a_log_line(driver, api_server, engine):
    cluster = record(replicas=3)
    with structlog.testing.capture_logs() as logs:
        await driver.start(cluster, driver.size_for(cluster.spec))
        roll_out(api_server)
        observed = await driver.observe(cluster.id)
        await driver.remove(cluster.id)
    secret_values = [observed.credentials.password]
    assert logs, "the driver logs what it applies"
    assert not [line for line in logs if any(value in repr(line) for value in secret_values)]
    assert observed.credentials.password not in repr(observed)


# -- through the provisioner ----------------------------------------------------------------
class RecordsInMemory:
    """The ClusterStore calls the provisioner makes, on a dict instead of JetStream KV."""

    def __init__(self, *records: ClusterRecord):
        self.records = {r.id: r for r in records}

    async def get(self, cluster_id: str):
        found = self.records.get(cluster_id)
        return (found.model_copy(deep=True), 1) if found else None

    async def list(self) -> list[ClusterRecord]:
        return [r.model_copy(deep=True) for r in self.records.values()]

    async def mutate(self, cluster_id: str, change):
        if cluster_id not in self.records:
            raise RecordGone(cluster_id)
        updated = change(self.records[cluster_id].model_copy(deep=True))
        if updated is not None:
            self.records[cluster_id] = updated
        return updated

    async def remove(self, record: ClusterRecord) -> None:
        self.records.pop(record.id, None)


async def test_the_provisioner_takes_a_cluster_to_ready_with_endpoint_and_credentials(driver, api_server):
    cluster = record(replicas=1)
    store, published = RecordsInMemory(cluster), []

    async def publish(event, subject):
        published.append(event.status)

    provisioner = Provisioner(platform_settings(), store, driver, publish, leases=None)  # reconciled directly
    assert await provisioner.reconcile(cluster.id) is True
    assert store.records[cluster.id].status == ClusterStatus.PROVISIONING
    assert await provisioner.reconcile(cluster.id) is True, "waits while the pods start"
    roll_out(api_server)
    assert await provisioner.reconcile(cluster.id) is False

    ready = store.records[cluster.id]
    secret = api_server.live("v1/secrets", NS, "engine-credentials")["data"]
    assert (ready.status, ready.health, ready.nodes) == (ClusterStatus.READY, "green", 1)
    assert ready.endpoint == f"http://engine.{NS}.svc.cluster.local:9200"
    assert (ready.credentials.username, ready.credentials.password) == (
        "elastic", base64.b64decode(secret["password"]).decode())

    store.records[cluster.id].delete_requested = True
    await provisioner.reconcile(cluster.id)
    assert cluster.id not in store.records and api_server.live("v1/namespaces", None, NS) is None
    assert published == [ClusterStatus.PROVISIONING, ClusterStatus.READY, ClusterStatus.DELETING,
                         ClusterStatus.DELETED]


# -- RBAC: the manager may do exactly what the driver does ----------------------------------
def permissions_used(requests: list[kmock.Request]) -> set[tuple[str, str, str, str | None]]:
    """(API group, resource, verb, object name) of every request, as RBAC would authorize it;
    an apply that creates its object needs `create` as well as `patch`."""
    used, applied = set(), set()
    for request in requests:
        group, resource = request.resource.group, request.resource.plural
        verb = {"GET": "get" if request.name else "list", "PATCH": "patch", "DELETE": "delete"}[request.method.value]
        used.add((group, resource, verb, request.name))
        key = (resource, request.namespace, request.name)
        if verb == "patch" and key not in applied:
            applied.add(key)
            used.add((group, resource, "create", request.name))
    return used


def manager_rules(objects: list[dict]) -> list[dict]:
    bound = {b["roleRef"]["name"] for b in objects if b["kind"] in ("ClusterRoleBinding", "RoleBinding")
             and {"kind": "ServiceAccount", "name": "manager", "namespace": "es-serverless"} in b["subjects"]}
    return [rule for o in objects if o["kind"] in ("ClusterRole", "Role") and o["metadata"]["name"] in bound
            for rule in o["rules"]]


def allows(rule: dict, group: str, resource: str, verb: str, name: str | None) -> bool:
    names = rule.get("resourceNames")
    return (group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
            and (names is None or name in names))


async def a_whole_life(driver: KubernetesDriver, api_server: ApiServer) -> None:
    one, three = record(replicas=1), record(replicas=3)
    await driver.start(one, driver.size_for(one.spec))
    roll_out(api_server)
    await driver.observe(one.id)
    await driver.resize(three, driver.size_for(one.spec), driver.size_for(three.spec))
    await driver.resize(one, driver.size_for(three.spec), driver.size_for(one.spec))
    await driver.orphans(set())
    await driver.remove(one.id)


@pytest.mark.parametrize(("deployment", "pull_secrets"), [
    ("deploy/kubernetes", []),
    ("deploy/kubernetes/overlays/air-gapped", ["regcred"]),
])
async def test_rbac_grants_the_manager_exactly_what_the_driver_does(api_server, engine, deployment, pull_secrets):
    from tests.deployment import kustomize_build

    api_server.objects["v1/secrets", "es-serverless", "regcred"] = {
        "metadata": {"name": "regcred", "namespace": "es-serverless"},
        "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}
    driver = make_driver(api_server, engine, image_pull_secrets=pull_secrets)
    await a_whole_life(driver, api_server)
    used = permissions_used(list(api_server))
    rules = manager_rules(kustomize_build(deployment))

    assert [u for u in used if not any(allows(rule, *u) for rule in rules)] == [], "forbidden in a real cluster"
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames", [None]):
                        assert any(g == group and r == resource and v == verb and (name is None or n == name)
                                   for g, r, v, n in used), f"granted but never used: {verb} {resource} {name or ''}"
