"""deploy/ and docker-compose.yml, checked as far as a machine without Docker or Kubernetes
can: every address names a host that exists, images are pinned, nothing dials localhost,
the images are slim and unprivileged, and kustomize's output is valid Kubernetes."""

import re
from urllib.parse import urlparse

import pytest
import yaml

from services.manager.drivers.kubernetes_rules import engine_image
from tests.deployment import REPO, compose, environment_of, kustomize_build, round_trips
from tests.helpers import PlatformSettings

SERVICES = {"manager": 8080, "shard_controller": 8081, "reporting": 9108, "gateway": 9200}
LOOPBACK = re.compile(r"localhost|127\.0\.0\.1|\[?::1\]?")
HOST_PORT = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?([A-Za-z0-9][A-Za-z0-9.-]*):(\d+)")


def hosts_named(text: str) -> set[str]:
    """Every host in `host:port` or `scheme://host:port` form; bind addresses are not hosts."""
    return {host for host, _ in HOST_PORT.findall(text) if host not in {"0.0.0.0"}}


def is_pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in {"", "latest"} and "@" not in name


def ess_keys_are_settings(env: dict[str, str]) -> list[str]:
    return [k for k in env if k.startswith("ESS_") and k[4:].lower() not in PlatformSettings.model_fields]


# -- docker-compose.yml ------------------------------------------------------------------
def test_compose_runs_the_platform_its_engine_and_its_observability():
    services = compose()["services"]
    assert set(services) >= {"nats", "manager", "shard-controller", "reporting", "gateway", "elasticsearch", "kibana",
                             "minio", "prometheus", "grafana"}
    assert "--jetstream" in services["nats"]["command"]
    for name in ("manager", "shard-controller", "reporting", "gateway"):
        dockerfile = services[name]["build"]["dockerfile"]
        assert (REPO / dockerfile).is_file() and services[name]["build"]["context"] == "."
    assert services["elasticsearch"]["image"].endswith("/elasticsearch/elasticsearch:8.15.3")
    assert services["kibana"]["image"].endswith("/kibana/kibana:8.15.3")


def test_every_address_in_compose_names_a_compose_service_and_none_is_loopback():
    services = compose()["services"]
    for name, service in services.items():
        env = environment_of(service)
        settings_text = " ".join(env.values()) + " " + " ".join(map(str, service.get("command") or []))
        assert not LOOPBACK.search(settings_text), name
        for host in hosts_named(settings_text):
            assert host in services, f"{name} dials {host}, which is no compose service"
        assert ess_keys_are_settings(env) == [], f"{name}: not a setting"
    platform_env = environment_of(services["manager"])
    assert platform_env["ESS_NATS_URL"] == "nats://nats:4222" and platform_env["ESS_API_HOST"] == "0.0.0.0"
    assert platform_env["ESS_DRIVER"] == "kubernetes"


def test_compose_images_are_pinned_and_one_variable_moves_them_to_a_mirror():
    services = compose()["services"]
    for name, service in services.items():
        assert is_pinned(service["image"]), f"{name}: {service['image']}"
    mirrored = compose({"ESS_IMAGE_REGISTRY": "mirror.corp:5000"})["services"]
    for name, service in mirrored.items():
        if "build" not in service:
            assert service["image"].startswith("mirror.corp:5000/"), name
        else:
            assert service["build"]["args"]["REGISTRY"] == "mirror.corp:5000", name
    assert environment_of(mirrored["manager"])["ESS_IMAGE_REGISTRY"] == "mirror.corp:5000"


def test_minio_console_has_its_own_address_and_the_manager_makes_the_bucket_with_minios_keys():
    services = compose()["services"]
    command = services["minio"]["command"]
    assert command[command.index("--console-address") + 1] == ":9001"
    assert "9001:9001" in services["minio"]["ports"]
    assert "minio-setup" not in services  # no one-shot: the manager makes the bucket at start-up
    manager, minio = environment_of(services["manager"]), environment_of(services["minio"])
    assert manager["ESS_SNAPSHOT_BUCKET"] == "snapshots"
    assert manager["ESS_SNAPSHOT_ENDPOINT"] == "http://minio:9000"
    assert (manager["ESS_SNAPSHOT_ACCESS_KEY"], manager["ESS_SNAPSHOT_SECRET_KEY"]) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    changed = {"MINIO_ROOT_USER": "ops", "MINIO_ROOT_PASSWORD": "a-longer-secret"}
    moved = {name: environment_of(service) for name, service in compose(changed)["services"].items()}
    assert (moved["manager"]["ESS_SNAPSHOT_ACCESS_KEY"], moved["manager"]["ESS_SNAPSHOT_SECRET_KEY"]) == (
        "ops", "a-longer-secret")
    assert services["manager"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_compose_elasticsearch_puts_minios_keys_in_its_keystore_before_its_own_entrypoint():
    services = compose()["services"]
    elasticsearch = services["elasticsearch"]
    env, minio = environment_of(elasticsearch), environment_of(services["minio"])
    assert (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]) == (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    assert env["s3.client.default.endpoint"] == "minio:9000"
    assert elasticsearch["entrypoint"][:2] == ["/bin/tini", "--"]  # the image's init, as its own entrypoint has
    script = " ".join(elasticsearch["command"])
    steps = [step.strip() for step in script.split("&&")]
    assert steps == [
        'printf %s "$S3_ACCESS_KEY" | bin/elasticsearch-keystore add -x -f s3.client.default.access_key',
        'printf %s "$S3_SECRET_KEY" | bin/elasticsearch-keystore add -x -f s3.client.default.secret_key',
        "exec /usr/local/bin/docker-entrypoint.sh eswrapper",
    ]
    assert minio["MINIO_ROOT_PASSWORD"] not in script  # the keys come from the environment, via stdin


def test_prometheus_and_grafana_mount_the_monitoring_files_and_their_targets_exist():
    services = compose()["services"]
    mounts = {m.split(":")[0]: m.split(":")[1] for s in ("prometheus", "grafana") for m in services[s]["volumes"]
              if m.startswith("./")}
    assert mounts == {
        "./deploy/monitoring/prometheus.yml": "/etc/prometheus/prometheus.yml",
        "./deploy/monitoring/alerts.yml": "/etc/prometheus/alerts.yml",
        "./deploy/monitoring/grafana/provisioning": "/etc/grafana/provisioning",
        "./deploy/monitoring/grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    for host_path in mounts:
        assert (REPO / host_path).exists(), host_path
    prometheus = yaml.safe_load((REPO / "deploy/monitoring/prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets and all(t.split(":")[0] in services for t in targets)
    datasources = REPO / "deploy/monitoring/grafana/provisioning/datasources"
    for path in datasources.glob("*.y*ml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            assert urlparse(source["url"]).hostname in services


def test_the_gateways_metrics_are_scraped_on_a_port_of_their_own_that_the_host_never_sees():
    gateway = compose()["services"]["gateway"]
    metrics_port = environment_of(gateway)["ESS_GATEWAY_METRICS_PORT"]
    assert metrics_port != environment_of(gateway)["ESS_GATEWAY_PORT"]
    prometheus = yaml.safe_load((REPO / "deploy/monitoring/prometheus.yml").read_text())
    [job] = [job for job in prometheus["scrape_configs"] if job["job_name"] == "gateway"]
    assert [t for c in job["static_configs"] for t in c["targets"]] == [f"gateway:{metrics_port}"]
    published = [mapping.rsplit(":", 1)[-1] for mapping in gateway["ports"]]  # host:container
    assert metrics_port not in published and gateway["expose"] == [metrics_port]


def test_every_depends_on_names_a_service():
    services = compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} -> {dependency}"


# -- the Dockerfiles ---------------------------------------------------------------------
def stages(dockerfile: str) -> list[str]:
    return re.split(r"(?m)^FROM ", dockerfile)[1:]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_image_builds_wheels_apart_and_runs_slim_unprivileged_and_checked(service):
    text = (REPO / "deploy/docker" / f"{service}.Dockerfile").read_text()
    *compiled, builder, final = stages(text)
    if service == "gateway":  # and its byte pump, compiled in a stage of its own and copied alone
        [pump] = compiled
        assert pump.startswith("${REGISTRY}/${GO_IMAGE} AS pump") and "go build" in pump
        assert is_pinned(text.split("GO_IMAGE=")[1].split()[0].replace("library/", ""))
        assert "COPY --from=pump /ess-pump /usr/local/bin/ess-pump" in final
        assert "ESS_GATEWAY_PUMP_BIN=/usr/local/bin/ess-pump" in final
    else:
        assert compiled == []
    assert builder.split()[0] == final.split()[0] and "slim" in text.split("PYTHON_IMAGE=")[1].split()[0]
    assert " AS builder" in builder.splitlines()[0] and "pip wheel" in builder
    assert "COPY --from=builder /wheels" in final and "--no-index" in final
    assert not re.search(r"apt-get|gcc|build-essential|\bmake\b|git ", final)
    user = re.search(r"(?m)^USER (\S+)", final).group(1)
    assert user.split(":")[0] not in {"0", "root"}
    healthcheck = re.search(r"(?ms)^HEALTHCHECK .*?\]$", final).group(0)
    assert "urllib.request" in healthcheck and "/health" in healthcheck
    assert f'CMD ["python", "-m", "services.{service}"]' in final
    port_setting = re.search(r"os\.environ\['(ESS_[A-Z_]+)'\]", healthcheck).group(1)
    assert re.search(rf"{port_setting}={SERVICES[service]}\b", final)
    env = dict(re.findall(r"(ESS_[A-Z_]+)=(\S+)", final))
    assert env["ESS_API_HOST"] == "0.0.0.0" and env["ESS_NATS_URL"] == "nats://nats:4222"
    assert ess_keys_are_settings(env) == []
    assert "localhost" not in text
    # the one loopback address allowed: the container checking itself
    assert [line for line in text.splitlines() if "127.0.0.1" in line and "urlopen" not in line] == []


def test_the_opensearch_s3_image_is_the_default_engine_image_with_repository_s3():
    text = (REPO / "deploy/docker/opensearch-s3.Dockerfile").read_text()
    [final] = stages(text)
    args = dict(re.findall(r"(?m)^ARG (\w+)=(\S+)$", text))
    default = engine_image("opensearch", PlatformSettings())
    assert f"{args['REGISTRY']}/{args['OPENSEARCH_IMAGE']}" == default and is_pinned(default)
    assert final.splitlines()[0] == "${REGISTRY}/${OPENSEARCH_IMAGE}"
    assert re.search(r"(?m)^RUN bin/opensearch-plugin install --batch repository-s3$", final)
    assert not re.search(r"(?m)^USER ", final)  # the image's own unprivileged user installs and runs it
    # what it tells the operator to set are settings
    named = set(re.findall(r"\b(ESS_[A-Z0-9_]+)=", text))
    assert named >= {"ESS_OPENSEARCH_REPOSITORY", "ESS_OPENSEARCH_IMAGE_TAG", "ESS_OPENSEARCH_S3_PLUGIN"}
    assert ess_keys_are_settings(dict.fromkeys(named, "")) == []


def test_the_build_context_carries_only_the_code():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*")] == "*"
    assert {"!pyproject.toml", "!libs/", "!services/"} <= set(ignored)


# -- deploy/kubernetes, through kustomize -------------------------------------------------
@pytest.fixture(scope="module")
def control_plane():
    return kustomize_build("deploy/kubernetes")


@pytest.fixture(scope="module")
def air_gapped():
    return kustomize_build("deploy/kubernetes/overlays/air-gapped")


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''}"
    return found if name is None else found[0]


def workloads(objects):
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


@pytest.mark.parametrize("variant", ["control_plane", "air_gapped"])
def test_kustomize_output_is_valid_kubernetes_objects(variant, request):
    objects = request.getfixturevalue(variant)
    kinds = {o["kind"] for o in objects}
    assert kinds >= {"Namespace", "ConfigMap", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                     "Service", "Deployment", "StatefulSet"}
    for obj in objects:
        assert round_trips(obj), f"{obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "es-serverless", obj["metadata"]["name"]
    assert not LOOPBACK.search(yaml.safe_dump_all(objects).replace("0.0.0.0", ""))


def test_control_plane_runs_nats_with_jetstream_as_a_statefulset_and_the_three_services(control_plane):
    nats = find(control_plane, "StatefulSet", "nats")
    container = nats["spec"]["template"]["spec"]["containers"][0]
    assert "--jetstream" in container["args"] and "--store_dir=/data" in container["args"]
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert {d["metadata"]["name"] for d in find(control_plane, "Deployment")} == {
        "manager", "shard-controller", "reporting", "gateway"}
    for deployment in find(control_plane, "Deployment"):
        name = deployment["metadata"]["name"]
        service = find(control_plane, "Service", name)
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_workloads_are_pinned_unprivileged_and_probed(control_plane):
    for workload in workloads(control_plane):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        for container in pod["containers"]:
            assert is_pinned(container["image"]), container["image"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["readinessProbe"] and container["livenessProbe"]
            assert "limits" in container["resources"]


def test_settings_configmap_names_services_by_cluster_dns_and_only_real_settings(control_plane):
    settings = find(control_plane, "ConfigMap", "es-serverless-settings")["data"]
    assert ess_keys_are_settings(settings) == []
    PlatformSettings(**{k[4:].lower(): v for k, v in settings.items()})  # every value parses
    # every NATS server by its pod's name under the StatefulSet's headless Service, one copy of
    # every stream per server
    servers = [urlparse(url) for url in settings["ESS_NATS_URL"].split(",")]
    statefulset = find(control_plane, "StatefulSet", "nats")
    assert len(servers) == statefulset["spec"]["replicas"] == int(settings["ESS_NATS_REPLICAS"]) == 3
    for i, url in enumerate(servers):
        pod, service, namespace, *rest = url.hostname.split(".")
        assert (pod, rest) == (f"nats-{i}", ["svc", "cluster", "local"])
        nats = find(control_plane, "Service", service)
        assert service == statefulset["spec"]["serviceName"]
        assert nats["metadata"]["namespace"] == namespace == settings["ESS_KUBE_PLATFORM_NAMESPACE"]
        assert url.port in {p["port"] for p in nats["spec"]["ports"]}
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    routes = next(a for a in args if a.startswith("--routes=")).removeprefix("--routes=").split(",")
    assert [urlparse(r).hostname for r in routes] == [url.hostname for url in servers]
    assert settings["ESS_DRIVER"] == "kubernetes" and settings["ESS_KUBE_IN_CLUSTER"] == "true"
    for deployment in find(control_plane, "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"configMapRef": {"name": "es-serverless-settings"}}]


def test_the_manager_reads_the_snapshot_stores_keys_from_a_secret_never_from_a_value(control_plane):
    manager = find(control_plane, "Deployment", "manager")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in manager["env"]}
    for name, key in (("ESS_SNAPSHOT_ACCESS_KEY", "access_key"), ("ESS_SNAPSHOT_SECRET_KEY", "secret_key")):
        assert "value" not in env[name]
        # optional: without the Secret the manager starts, with backups off or the default credentials
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "es-serverless-snapshot-keys", "key": key,
                                                          "optional": True}
    settings = find(control_plane, "ConfigMap", "es-serverless-settings")["data"]
    assert settings["ESS_SNAPSHOT_BUCKET"] == "" and not any("KEY" in name for name in settings)


def test_only_the_manager_holds_an_api_identity(control_plane):
    binding = find(control_plane, "ClusterRoleBinding", "es-serverless-manager")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "manager", "namespace": "es-serverless"}]
    find(control_plane, "ServiceAccount", "manager")
    for deployment in find(control_plane, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        if deployment["metadata"]["name"] == "manager":
            assert pod["serviceAccountName"] == "manager"
        else:
            assert pod["automountServiceAccountToken"] is False


def test_air_gapped_overlay_pulls_every_image_from_one_registry_with_a_pull_secret(air_gapped):
    mirror = "registry.corp.example:5000"
    for workload in workloads(air_gapped):
        pod = workload["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}], workload["metadata"]["name"]
        assert all(c["image"].startswith(mirror + "/") for c in pod["containers"])
    settings = find(air_gapped, "ConfigMap", "es-serverless-settings")["data"]
    assert settings["ESS_IMAGE_PULL_SECRETS"] == "regcred"
    engine_settings = PlatformSettings(**{k[4:].lower(): v for k, v in settings.items()})
    for engine in ("elasticsearch", "opensearch"):
        assert engine_image(engine, engine_settings).startswith(mirror + "/")
