"""The Kubernetes objects of a tenant cluster, rendered without any API: sizes, heap, labels,
policies, images, the `render` command, and that every object is a valid Kubernetes object."""

import ast
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from kubernetes import client

from libs.common.models import ClusterRecord, ClusterSpec
from libs.common.quantities import parse_bytes
from services.manager.settings import KubernetesDriverSettings
from services.manager import render
from services.manager.drivers import kubernetes_manifests as manifests
from services.manager.drivers import kubernetes_rules as rules
from services.manager.drivers.kubernetes_secrets import generate_password, issue_transport_certificates
from services.manager.planning import EngineSize
from tests.helpers import PlatformSettings

REPO = Path(__file__).resolve().parents[2]
SEED = {"tenant_org_id": "acme", "user": "alice", "service_name": "search",
        "replicas": 1, "cpu": "500m", "memory": "1Gi", "storage": "5Gi"}
VERSIONS = {"elasticsearch": "8.15.3", "opensearch": "2.19.1"}


def settings(**overrides) -> KubernetesDriverSettings:
    # explicit values, so a developer's ESS_ environment cannot change what is asserted
    base = {"image_registry": "", "image_pull_secrets": [], "storage_class": None,
            "kube_platform_namespace": "es-serverless", "kube_namespace_prefix": "ess-",
            "kube_cluster_domain": "cluster.local", "image_pull_policy": "IfNotPresent"}
    return KubernetesDriverSettings(**{**base, **overrides})


def cluster(engine="elasticsearch", replicas=1, cpu="500m", memory="1Gi", storage="5Gi",
            version: str | None = None) -> ClusterRecord:
    return ClusterRecord(
        id="c0a1b2c3d4e5f", tenant_org_id="acme", user="alice", service_name="search",
        spec=ClusterSpec(replicas=replicas, cpu=cpu, memory=memory, storage=storage,
                         engine=engine, version=version or VERSIONS[engine]),
    )


def by_kind(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def engine_container(statefulset):
    return statefulset["spec"]["template"]["spec"]["containers"][0]


def env_of(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def heap_mb(container) -> int:
    java_opts = next(v for k, v in env_of(container).items() if k.endswith("JAVA_OPTS"))
    xms, xmx = re.search(r"-Xms(\d+)m", java_opts).group(1), re.search(r"-Xmx(\d+)m", java_opts).group(1)
    assert xms == xmx, "a heap that grows pauses the engine; start at its size"
    return int(xmx)


# -- the seed's request, through the render command ---------------------------------------
@pytest.fixture(autouse=True)
def no_platform_environment(monkeypatch):
    """`render` reads ESS_ settings from the environment; a developer's must not leak in."""
    import os

    for name in [n for n in os.environ if n.startswith("ESS_")]:
        monkeypatch.delenv(name)


def run_render(argv, stdin_text=""):
    out, err = io.StringIO(), io.StringIO()
    code = render.main(argv, stdin=io.StringIO(stdin_text), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_seed_request_on_stdin_renders_one_small_elasticsearch_node():
    code, out, err = run_render(["--cluster-id", "c0a1b2c3d4e5f"], json.dumps(SEED))
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    statefulset = by_kind(objects, "StatefulSet")
    container = engine_container(statefulset)
    assert statefulset["spec"]["replicas"] == 1
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "500m", "memory": "1Gi"}}
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert heap_mb(container) * 2**20 <= parse_bytes(container["resources"]["limits"]["memory"]) / 2
    assert container["image"] == "docker.elastic.co/elasticsearch/elasticsearch:8.15.3"


def test_flags_render_the_same_objects_as_the_request_body():
    flags = ["--tenant-org-id", "acme", "--user", "alice", "--service-name", "search", "--replicas", "1",
             "--cpu", "500m", "--memory", "1Gi", "--storage", "5Gi", "--engine", "opensearch",
             "--cluster-id", "c0a1b2c3d4e5f"]
    by_flags = run_render(flags)
    by_body = run_render(["--cluster-id", "c0a1b2c3d4e5f"], json.dumps({**SEED, "engine": "opensearch"}))
    assert by_flags[0] == by_body[0] == 0
    assert by_flags[1] == by_body[1]
    assert "opensearchproject/opensearch:2.19.1" in by_flags[1]


def test_invalid_request_names_each_field_and_its_fix_and_prints_nothing():
    code, out, err = run_render([], json.dumps({**SEED, "tenant_org_id": "Acme", "memory": "1Gb"}))
    assert code == 2 and out == ""
    assert "tenant_org_id" in err and "DNS-1123" in err
    assert "memory" in err and "e.g. 1Gi" in err


def test_render_shows_placeholders_never_generated_secrets():
    code, out, _ = run_render(["--cluster-id", "c0a1b2c3d4e5f"], json.dumps(SEED))
    secrets = {o["metadata"]["name"]: o for o in yaml.safe_load_all(out) if o["kind"] == "Secret"}
    assert set(secrets) == {rules.CREDENTIALS_SECRET, rules.TRANSPORT_TLS_SECRET}
    assert secrets[rules.CREDENTIALS_SECRET]["stringData"] == {"username": "elastic",
                                                               "password": rules.GENERATED_PLACEHOLDER}
    # PEM the API server can read (a placeholder made it warn), made for this output alone
    tls = secrets[rules.TRANSPORT_TLS_SECRET]["stringData"]
    x509.load_pem_x509_certificate(tls["tls.crt"].encode())
    x509.load_pem_x509_certificate(tls["ca.crt"].encode())
    again = {o["metadata"]["name"]: o for o in yaml.safe_load_all(run_render(["--cluster-id", "c0a1b2c3d4e5f"],
                                                                            json.dumps(SEED))[1])
             if o["kind"] == "Secret"}
    assert again[rules.TRANSPORT_TLS_SECRET]["stringData"]["tls.key"] != tls["tls.key"]


def test_render_starts_no_server_and_the_bare_module_still_serves(monkeypatch):
    from services.manager import __main__ as entry

    served = []
    monkeypatch.setattr(entry.uvicorn, "run", lambda app, **options: served.append(options))
    monkeypatch.setattr(entry.sys, "argv", ["services.manager", "render", "--help"])
    with pytest.raises(SystemExit) as stop:
        entry.main()
    assert stop.value.code == 0 and served == []

    monkeypatch.setattr(entry.sys, "argv", ["services.manager"])
    entry.main()
    assert [(options["host"], options["port"]) for options in served] == [("127.0.0.1", 8080)]


# -- every object is a Kubernetes object --------------------------------------------------
@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_every_rendered_object_round_trips_through_the_clients_openapi_models(engine):
    """A misspelt or misplaced key is dropped by the model, so the round trip would differ."""
    api = client.ApiClient()
    objects = manifests.render_for_review(
        cluster(engine, replicas=3), settings(image_pull_secrets=["regcred"], storage_class="fast-ssd"))
    for obj in objects:
        model = api.deserialize(json.dumps(obj), f"V1{obj['kind']}", "application/json")
        assert api.sanitize_for_serialization(model) == obj, f"{obj['kind']} {obj['metadata']['name']}"


def test_a_misspelt_field_fails_the_model_round_trip():
    statefulset = manifests.render_statefulset(cluster(), settings())
    container = engine_container(statefulset)
    container["readinesProbe"] = container.pop("readinessProbe")
    api = client.ApiClient()
    model = api.deserialize(json.dumps(statefulset), "V1StatefulSet", "application/json")
    assert api.sanitize_for_serialization(model) != statefulset


# -- sizes and heap -------------------------------------------------------------------------
@pytest.mark.parametrize(("memory", "heap"), [("256Mi", 128), ("1Gi", 512), ("3Gi", 1536), ("64Gi", 31 * 1024)])
def test_heap_is_half_the_memory_limit_and_never_above_31_gib(memory, heap):
    container = engine_container(manifests.render_statefulset(cluster(memory=memory), settings()))
    assert heap_mb(container) == heap
    assert heap_mb(container) * 2**20 <= parse_bytes(memory) / 2


def test_quota_holds_all_nodes_and_limits_hold_one_node():
    objects = manifests.render_cluster(cluster(replicas=3, cpu="500m", memory="2Gi", storage="10Gi"), settings())
    hard = by_kind(objects, "ResourceQuota")["spec"]["hard"]
    assert hard["pods"] == "3" and hard["persistentvolumeclaims"] == "3"
    assert hard["requests.cpu"] == hard["limits.cpu"] == "1500m"
    assert hard["requests.memory"] == hard["limits.memory"] == "6Gi"
    assert hard["requests.storage"] == "30Gi"
    assert hard["services.loadbalancers"] == hard["services.nodeports"] == "0"
    container_limits, claim_limits = by_kind(objects, "LimitRange")["spec"]["limits"]
    assert container_limits["max"] == container_limits["default"] == {"cpu": "500m", "memory": "2Gi"}
    assert claim_limits == {"type": "PersistentVolumeClaim", "max": {"storage": "10Gi"}}


def test_the_size_read_back_from_a_statefulset_is_the_size_it_was_rendered_for():
    record = cluster(replicas=3, cpu="1500m", memory="4Gi")
    statefulset = manifests.render_statefulset(record, settings())
    assert rules.size_of_statefulset(statefulset) == EngineSize(nodes=3, heap_mb=2048, processors=2)
    assert rules.size_of_statefulset(statefulset) == rules.pod_size(3, "1500m", "4Gi")
    assert rules.size_of_statefulset({"spec": {}}) is None


# -- labels, discovery, policies ------------------------------------------------------------
def test_every_object_carries_tenant_and_cluster_and_the_namespace_is_the_clusters():
    objects = manifests.render_for_review(cluster(), settings())
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels[rules.TENANT_LABEL] == "acme"
        assert labels[rules.CLUSTER_LABEL] == "c0a1b2c3d4e5f"
        assert labels[rules.MANAGED_BY_LABEL] == "es-serverless"
        assert obj["metadata"].get("namespace", obj["metadata"]["name"]) == "ess-c0a1b2c3d4e5f"
    namespace = by_kind(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["metadata"]["annotations"][rules.USER_ANNOTATION] == "alice"


def test_pods_match_every_selector_that_points_at_them():
    objects = manifests.render_cluster(cluster(replicas=3), settings())
    statefulset = by_kind(objects, "StatefulSet")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    selectors = [
        statefulset["spec"]["selector"]["matchLabels"],
        by_kind(objects, "Service", "engine")["spec"]["selector"],
        by_kind(objects, "Service", "engine-nodes")["spec"]["selector"],
        by_kind(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        by_kind(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/name"] == "elasticsearch"


def test_discovery_service_is_headless_and_publishes_nodes_before_they_are_ready():
    objects = manifests.render_cluster(cluster(replicas=3), settings())
    discovery = by_kind(objects, "Service", rules.DISCOVERY_SERVICE)
    assert discovery["spec"]["clusterIP"] == "None" and discovery["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in discovery["spec"]["ports"]} == {9200, 9300}
    client_service = by_kind(objects, "Service", "engine")
    assert [p["port"] for p in client_service["spec"]["ports"]] == [9200]
    statefulset = by_kind(objects, "StatefulSet")
    assert statefulset["spec"]["serviceName"] == rules.DISCOVERY_SERVICE
    env = env_of(engine_container(statefulset))
    assert env["discovery.seed_hosts"] == rules.DISCOVERY_SERVICE
    # growing 1 -> 3 must not change the pods' settings, so only the first node bootstraps
    assert env["cluster.initial_master_nodes"] == "engine-0"
    assert env["cluster.name"] == "c0a1b2c3d4e5f"


def test_disruptions_take_one_node_at_a_time():
    pdb = manifests.render_pod_disruption_budget(cluster(replicas=3), settings())
    assert pdb["spec"]["maxUnavailable"] == 1


def test_engine_pods_run_unprivileged_with_credentials_only_from_the_secret():
    statefulset = manifests.render_statefulset(cluster(), settings())
    pod = statefulset["spec"]["template"]["spec"]
    container = engine_container(statefulset)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    password = env_of(container)["ELASTIC_PASSWORD"]
    assert password == {"secretKeyRef": {"name": rules.CREDENTIALS_SECRET, "key": "password"}}
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "_cluster/health?wait_for_status=yellow" in probe and "${ELASTIC_PASSWORD}" in probe


def test_elasticsearch_gets_transport_certificates_and_opensearch_its_own_settings():
    es = engine_container(manifests.render_statefulset(cluster("elasticsearch"), settings()))
    assert "/usr/share/elasticsearch/config/certs" in {m["mountPath"] for m in es["volumeMounts"]}
    assert env_of(es)["xpack.security.transport.ssl.enabled"] == "true"
    assert env_of(es)["xpack.security.http.ssl.enabled"] == "false"
    opensearch = engine_container(manifests.render_statefulset(cluster("opensearch"), settings()))
    env = env_of(opensearch)
    assert "OPENSEARCH_JAVA_OPTS" in env and "ES_JAVA_OPTS" not in env
    assert env["cluster.initial_cluster_manager_nodes"] == "engine-0"
    assert env["plugins.security.ssl.http.enabled"] == "false"
    assert [m["mountPath"] for m in opensearch["volumeMounts"]] == ["/usr/share/opensearch/data"]


# -- images and pulling -------------------------------------------------------------------
def test_public_images_by_default_and_one_registry_setting_moves_them_all():
    assert rules.engine_image("elasticsearch", settings()) == "docker.elastic.co/elasticsearch/elasticsearch:8.15.3"
    assert rules.engine_image("opensearch", settings()) == "docker.io/opensearchproject/opensearch:2.19.1"
    mirror = settings(image_registry="registry.corp.example:5000/mirror/")
    assert {rules.engine_image(e, mirror) for e in VERSIONS} == {
        "registry.corp.example:5000/mirror/elasticsearch/elasticsearch:8.15.3",
        "registry.corp.example:5000/mirror/opensearchproject/opensearch:2.19.1",
    }


def test_pull_policy_pull_secrets_and_storage_class_reach_the_statefulset():
    statefulset = manifests.render_statefulset(
        cluster(), settings(image_pull_policy="Never", image_pull_secrets="regcred, mirror-ro", storage_class="fast"))
    assert engine_container(statefulset)["imagePullPolicy"] == "Never"
    assert statefulset["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-ro"}]
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    assert "storageClassName" not in manifests.render_statefulset(cluster(), settings())["spec"][
        "volumeClaimTemplates"][0]["spec"]


def test_a_pull_secret_is_copied_with_its_data_into_the_cluster_namespace():
    source = {"metadata": {"name": "regcred", "namespace": "es-serverless", "uid": "x"},
              "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}
    copy_ = manifests.render_pull_secret_copy(cluster(), settings(), source)
    assert copy_["metadata"]["namespace"] == "ess-c0a1b2c3d4e5f" and "uid" not in copy_["metadata"]
    assert copy_["data"] == {".dockerconfigjson": "e30="} and copy_["type"] == "kubernetes.io/dockerconfigjson"


def test_no_subprocess_or_kubectl_in_the_driver_and_no_localhost_in_image_settings():
    driver_files = ["kubernetes.py", "kubernetes_manifests.py", "kubernetes_rules.py", "kubernetes_secrets.py",
                    "kubernetes_engine.py"]
    for name in driver_files:
        source = (REPO / "services/manager/drivers" / name).read_text()
        imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source))
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
        assert not imported & {"subprocess", "os", "shlex", "pty"}, name
        assert "kubectl" not in source.lower(), name
    defaults = PlatformSettings.model_fields
    image_settings = [f for f in defaults if "image" in f or "repository" in f or "registry" in f]
    assert len(image_settings) >= 6
    for name in image_settings:
        assert not re.search(r"localhost|127\.0\.0\.1", str(defaults[name].default)), name
    for engine in VERSIONS:
        assert not re.search(r"localhost|127\.0\.0\.1", rules.engine_image(engine, settings()))


# -- comparing with the live object ------------------------------------------------------
def test_a_live_object_with_server_defaults_holds_what_would_be_applied():
    desired = rules.stamp(manifests.render_client_service(cluster(), settings()))
    live = json.loads(json.dumps(desired))
    live["metadata"].update(uid="u1", resourceVersion="7", managedFields=[{"manager": "es-serverless"}])
    live["spec"].update(clusterIP="10.0.0.7", sessionAffinity="None")
    live["status"] = {"loadBalancer": {}}
    assert rules.holds(live, desired)


def test_a_changed_value_or_a_shorter_list_means_apply_again():
    desired = rules.stamp(manifests.render_statefulset(cluster(replicas=3), settings()))
    live = json.loads(json.dumps(desired))
    live["spec"]["replicas"] = 2
    assert not rules.holds(live, desired)
    live = json.loads(json.dumps(desired))
    engine_container(live)["env"].pop()
    assert not rules.holds(live, desired)


def test_quantities_the_api_server_rewrote_still_hold():
    desired = manifests.render_limit_range(cluster(memory="1024Mi", cpu="1000m"), settings())
    live = json.loads(json.dumps(desired))
    live["spec"]["limits"][0]["max"] = {"cpu": "1", "memory": "1Gi"}
    assert rules.holds(live, desired)
    live["spec"]["limits"][0]["max"]["memory"] = "2Gi"
    assert not rules.holds(live, desired)


def test_the_stamp_changes_when_a_field_stops_being_rendered():
    service = manifests.render_discovery_service(cluster(), settings())
    trimmed = json.loads(json.dumps(service))
    del trimmed["spec"]["publishNotReadyAddresses"]
    assert rules.stamp(service)["metadata"]["annotations"][rules.SPEC_HASH_ANNOTATION] != \
        rules.stamp(trimmed)["metadata"]["annotations"][rules.SPEC_HASH_ANNOTATION]
    assert rules.stamp(rules.stamp(service)) == rules.stamp(service)


def test_the_quota_stays_wide_while_pods_roll_to_a_smaller_size():
    big = manifests.render_resource_quota(cluster(replicas=3, memory="2Gi"), settings())
    small = rules.stamp(manifests.render_resource_quota(cluster(replicas=3, memory="1Gi"), settings()))
    held = rules.widen_quota(small, big)
    assert held["spec"]["hard"]["limits.memory"] == "6Gi" and held["spec"]["hard"]["pods"] == "3"
    bigger = rules.stamp(manifests.render_resource_quota(cluster(replicas=3, memory="4Gi"), settings()))
    assert rules.widen_quota(bigger, big) is bigger
    assert rules.widen_quota(small, None) is small


# -- what the driver generates -----------------------------------------------------------
def test_generated_passwords_differ_and_meet_opensearchs_strength_rules():
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    for password in passwords:
        assert len(password) == 24 and re.fullmatch(r"[A-Za-z0-9_-]+", password)
        assert re.search("[A-Z]", password) and re.search("[a-z]", password)
        assert re.search("[0-9]", password) and re.search("[-_]", password)


def test_transport_certificate_is_issued_by_the_clusters_own_ca_for_its_node_names():
    domains = rules.node_domains("c0a1b2c3d4e5f", settings())
    certs = issue_transport_certificates("c0a1b2c3d4e5f", domains, datetime.now(timezone.utc))
    ca = x509.load_pem_x509_certificate(certs.ca_pem.encode())
    node = x509.load_pem_x509_certificate(certs.cert_pem.encode())
    node.verify_directly_issued_by(ca)
    names = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "*.engine-nodes.ess-c0a1b2c3d4e5f.svc.cluster.local" in names
    assert "BEGIN PRIVATE KEY" in certs.key_pem and certs.key_pem not in repr(certs)
    other = issue_transport_certificates("c0a1b2c3d4e5f", domains, datetime.now(timezone.utc))
    assert other.ca_pem != certs.ca_pem

