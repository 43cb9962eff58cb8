"""Who reaches what on Kubernetes, read from the policies as a network plugin would enforce them:
a tenant cluster's engines (the driver's NetworkPolicy) and the control plane's pods
(deploy/kubernetes). Each test names who gets in and, as much, who is kept out."""

import pytest

from libs.common.models import ClusterRecord, ClusterSpec
from services.manager.drivers import kubernetes_manifests as manifests
from services.manager.drivers import kubernetes_rules as rules
from services.manager.settings import KubernetesDriverSettings
from tests.deployment import kustomize_build
from tests.network_policies import OUTSIDE, Pod, admits

PLATFORM = "ess-platform"  # not the default, so the setting is seen to reach the policy
SERVICES = {"gateway": 9200, "manager": 8080, "reporting": 9108, "shard-controller": 8081}
MONITORING_LABEL = {"es-serverless.io/monitoring": "true"}


def settings(**overrides) -> KubernetesDriverSettings:
    return KubernetesDriverSettings(**{"kube_platform_namespace": PLATFORM, "kube_namespace_prefix": "ess-",
                                       "image_pull_secrets": [], **overrides})


def cluster(cluster_id="c0a1b2c3d4e5f", tenant="acme") -> ClusterRecord:
    return ClusterRecord(id=cluster_id, tenant_org_id=tenant, user="alice", service_name="search",
                         spec=ClusterSpec(replicas=3, cpu="500m", memory="1Gi", storage="5Gi",
                                          engine="elasticsearch", version="8.15.3"))


def engine_node(record: ClusterRecord) -> Pod:
    """An engine pod, in its namespace with the labels the driver gives both."""
    namespace = manifests.render_namespace(record, settings())["metadata"]
    return Pod(namespace["name"], rules.pod_labels(record), namespace["labels"])


def app(name: str, namespace: str = PLATFORM) -> Pod:
    return Pod(namespace, {"app.kubernetes.io/name": name})


# -- the evaluator itself: a helper that admitted everyone would pass every test below ----------
def test_the_evaluator_reads_selectors_as_kubernetes_does():
    target = Pod("ns", {"role": "db"})
    policy = {"kind": "NetworkPolicy", "metadata": {"namespace": "ns"}, "spec": {
        "podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"], "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"role": "api"}}}], "ports": [{"port": 5432}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}},
                       "podSelector": {"matchExpressions": [
                           {"key": "role", "operator": "In", "values": ["backup"]}]}}]},
        ]}}
    assert admits([policy], target, 5432, Pod("ns", {"role": "api"}))
    assert not admits([policy], target, 5433, Pod("ns", {"role": "api"})), "the rule names its port"
    assert not admits([policy], target, 5432, Pod("other", {"role": "api"})), "a pod selector alone: own namespace"
    assert admits([policy], target, 22, Pod("other", {"role": "backup"}, {"team": "ops"})), "no ports: every port"
    assert not admits([policy], target, 22, Pod("other", {"role": "backup"})), "both selectors of a peer must match"
    assert not admits([policy], target, 22, Pod("other", {"role": "api"}, {"team": "ops"}))
    assert not admits([policy], target, 5432, OUTSIDE)
    assert admits([policy], Pod("ns", {"role": "web"}), 80, OUTSIDE), "a pod no policy selects is open"
    name_only = {**policy, "spec": {**policy["spec"], "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ns"}}}]}]}}
    assert not admits([name_only], target, 1, Pod("evil", {}, {"kubernetes.io/metadata.name": "ns"})), \
        "the API server sets the name label: it cannot be borrowed"


# -- a tenant cluster's engines ---------------------------------------------------------------
def test_engine_http_takes_only_the_platform_services_that_dial_engines_and_the_nodes_take_each_other():
    record = cluster()
    policy = manifests.render_network_policy(record, settings())
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": rules.pod_selector(record)} and spec["policyTypes"] == ["Ingress"]
    platform_rule, nodes_rule = spec["ingress"]
    assert platform_rule == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": PLATFORM}},
                  "podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                                        "values": ["gateway", "manager", "reporting",
                                                                   "shard-controller"]}]}}],
        "ports": [{"protocol": "TCP", "port": 9200}],
    }
    assert nodes_rule == {"from": [{"podSelector": {"matchLabels": rules.pod_selector(record)}}]}

    node = engine_node(record)
    for service in SERVICES:
        assert admits([policy], node, 9200, app(service)), service
        assert not admits([policy], node, 9300, app(service)), f"{service} on transport"
    for port in (9200, 9300, 9600):
        assert admits([policy], node, port, engine_node(record)), f"node to node on {port}"

    kept_out = {
        "an unlabelled pod of the platform namespace": Pod(PLATFORM),
        "MinIO beside the platform": app("minio"),
        "a pod calling itself the gateway elsewhere": app("gateway", "default"),
        "another tenant's engine": engine_node(cluster("c99", tenant="globex")),
        "another cluster of the same tenant": engine_node(cluster("c98")),
        "a pod of the tenant labelled like the old rule let in": Pod("tenant-apps", {},
                                                                    {rules.TENANT_LABEL: "acme"}),
        "a pod of the cluster's namespace that is no node": Pod(node.namespace, rules.cluster_labels(record),
                                                                node.namespace_labels),
        "a client outside the cluster": OUTSIDE,
    }
    for what, source in kept_out.items():
        assert not any(admits([policy], node, port, source) for port in (9200, 9300)), what


def test_the_engine_clients_are_the_control_planes_deployments_by_their_pod_labels(control_plane):
    labelled = {d["spec"]["template"]["metadata"]["labels"][rules.APP_LABEL]
                for d in control_plane if d["kind"] == "Deployment"}
    assert set(rules.ENGINE_CLIENTS) == labelled


# -- the control plane's namespace --------------------------------------------------------------
@pytest.fixture(scope="module")
def control_plane():
    return kustomize_build("deploy/kubernetes")


def workload_of(control_plane, name: str) -> dict:
    [workload] = [o for o in control_plane if o["kind"] in ("Deployment", "StatefulSet")
                  and o["metadata"]["name"] == name]
    return workload


def platform_pod(control_plane, name: str) -> Pod:
    workload = workload_of(control_plane, name)
    return Pod(workload["metadata"]["namespace"], workload["spec"]["template"]["metadata"]["labels"])


def container_ports(control_plane, name: str) -> dict[str, int]:
    [container] = workload_of(control_plane, name)["spec"]["template"]["spec"]["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_public_ports_are_open_and_metrics_only_ports_take_monitoring_alone(control_plane):
    pod = {name: platform_pod(control_plane, name) for name in [*SERVICES, "nats"]}
    monitoring = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, MONITORING_LABEL)
    unlabelled_monitoring = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
    tenant_engine = engine_node(cluster())
    for name in ("gateway", "manager"):
        for source in (OUTSIDE, tenant_engine, monitoring, Pod("default")):
            assert admits(control_plane, pod[name], SERVICES[name], source), (name, source)
    for name in ("reporting", "shard-controller"):
        assert admits(control_plane, pod[name], SERVICES[name], monitoring), name
        for source in (OUTSIDE, tenant_engine, unlabelled_monitoring, pod["gateway"], Pod("default")):
            assert not admits(control_plane, pod[name], SERVICES[name], source), (name, source)
    for name in SERVICES:  # nothing but the service's own ports
        beyond = max(container_ports(control_plane, name).values()) + 1
        assert not admits(control_plane, pod[name], beyond, OUTSIDE), name
        assert not admits(control_plane, pod[name], beyond, monitoring), name


def test_the_gateways_metrics_port_takes_monitoring_alone_and_its_tenants_port_everyone(control_plane):
    gateway = platform_pod(control_plane, "gateway")
    ports = container_ports(control_plane, "gateway")
    metrics = ports["metrics"]  # where the pod serves /metrics
    assert ports["http"] == SERVICES["gateway"] != metrics
    monitoring = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, MONITORING_LABEL)
    assert admits(control_plane, gateway, metrics, monitoring)
    kept_out = {
        "a client outside the cluster": OUTSIDE,
        "a tenant's engine": engine_node(cluster()),
        "Prometheus in an unlabelled namespace": Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}),
        "a tenant's application": Pod("tenant-apps", {"app": "shop"}),
        "the manager beside it": platform_pod(control_plane, "manager"),
        "another gateway replica": gateway,
    }
    for what, source in kept_out.items():
        assert not admits(control_plane, gateway, metrics, source), what
        assert admits(control_plane, gateway, SERVICES["gateway"], source), f"{what}: the tenants' port stays open"


def test_nats_takes_the_platforms_services_and_engines_reach_only_the_public_ports(control_plane):
    nats = platform_pod(control_plane, "nats")
    for name in SERVICES:
        assert admits(control_plane, nats, 4222, platform_pod(control_plane, name)), name
    monitoring = Pod("monitoring", {}, MONITORING_LABEL)
    assert admits(control_plane, nats, 8222, monitoring) and not admits(control_plane, nats, 4222, monitoring)
    minio = app("minio", nats.namespace)
    for source in (Pod(nats.namespace), minio, engine_node(cluster()), app("manager", "default"), OUTSIDE):
        assert not any(admits(control_plane, nats, port, source) for port in (4222, 8222)), source
    # a pod added to the namespace later is closed until it gets a policy of its own
    debug = Pod(nats.namespace, {"app": "debug"})
    assert not admits(control_plane, debug, 8000, platform_pod(control_plane, "manager"))

    # engines reach nothing here but the public ports and a snapshot store run here
    tenant_engine = engine_node(cluster())
    targets = {name: platform_pod(control_plane, name) for name in [*SERVICES, "nats"]} | {"minio": minio}
    ports = (*SERVICES.values(), 4222, 8222, 9000)
    reached = {name for name, target in targets.items()
               if any(admits(control_plane, target, port, tenant_engine) for port in ports)}
    assert reached == {"gateway", "manager", "minio"}


def test_a_snapshot_store_here_takes_the_manager_and_engine_nodes_on_the_endpoints_port(control_plane):
    settings_map = next(o for o in control_plane if o["kind"] == "ConfigMap")["data"]
    endpoint = settings_map["ESS_SNAPSHOT_ENDPOINT"]  # http://minio.<platform namespace>.svc...:9000
    host, port = endpoint.split("//")[1].rsplit(":", 1)
    service, namespace = host.split(".")[:2]
    store = app(service, namespace)
    assert admits(control_plane, store, int(port), platform_pod(control_plane, "manager"))
    assert admits(control_plane, store, int(port), engine_node(cluster()))
    for source in (platform_pod(control_plane, "gateway"), Pod("default", {"app.kubernetes.io/component": "engine"}),
                   OUTSIDE):
        assert not admits(control_plane, store, int(port), source), source
