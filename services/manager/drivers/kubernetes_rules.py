"""The rules the kubernetes driver shares with rendering, no I/O here: names, labels, heap,
images, the size a StatefulSet runs at, and whether a live object already holds what would be
applied.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from libs.common.models import ClusterRecord
from libs.common.quantities import (
    QuantityError,
    parse_bytes,
    parse_cpu_millis,
    parse_quantity,
)
from libs.common.settings import (
    ELASTICSEARCH819_VERSION, ELASTICSEARCH_VERSION, ENGINE_VERSION, OPENSEARCH3_VERSION, KubernetesSection,
)
from services.manager.planning import EngineSize

Manifest = dict[str, Any]

# each engine's default (its image tag a setting) first; the others are the official images' own tags
ENGINE_VERSIONS = {"elasticsearch": [ELASTICSEARCH_VERSION, ELASTICSEARCH819_VERSION],
                   "opensearch": [ENGINE_VERSION, OPENSEARCH3_VERSION]}
FIELD_MANAGER = "es-serverless"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
TENANT_LABEL = "es-serverless.io/tenant"
CLUSTER_LABEL = "es-serverless.io/cluster"
SERVICE_LABEL = "es-serverless.io/service"
COMPONENT_LABEL = "app.kubernetes.io/component"
APP_LABEL = "app.kubernetes.io/name"
# the API server sets it to the namespace's name, so no one can label another namespace into a selector
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# the platform's pods that dial engines' HTTP, by their APP_LABEL in deploy/kubernetes/base (a test checks)
ENGINE_CLIENTS = ("gateway", "manager", "reporting", "shard-controller")
USER_ANNOTATION = "es-serverless.io/user"
SPEC_HASH_ANNOTATION = "es-serverless.io/spec-hash"
PULL_SECRET_SOURCE_ANNOTATION = "es-serverless.io/copied-from"
ROLLING_FROM_ANNOTATION = "es-serverless.io/rolling-from"  # on a StatefulSet mid-upgrade: the old pods' version

# fixed names inside a cluster's own namespace: the driver finds them from the cluster id alone
ENGINE = "engine"  # StatefulSet, client Service, PDB, NetworkPolicy, quota, limits; pods engine-0..
DISCOVERY_SERVICE = "engine-nodes"
CREDENTIALS_SECRET = "engine-credentials"
TRANSPORT_TLS_SECRET = "engine-transport-tls"
DATA_VOLUME = "data"
HTTP_PORT = 9200
TRANSPORT_PORT = 9300
ENGINE_UID = 1000  # the user both engine images run as
MAX_HEAP_MB = 31 * 1024  # above about 32 GiB the JVM loses compressed object pointers
GENERATED_PLACEHOLDER = "<generated when applied>"
COPIED_PLACEHOLDER = "<copied from the platform namespace when applied>"


@dataclass(frozen=True)
class EngineFlavour:
    """Where Elasticsearch and OpenSearch images differ in how they are configured."""

    public_registry: str
    home: str
    java_opts_env: str
    superuser: str
    password_env: str
    initial_managers_setting: str
    security: dict[str, str]
    transport_tls: bool  # whether the cluster needs certificates of its own between nodes
    keystore_tool: str  # adds secure settings (the S3 keys), relative to home
    path_conf_env: str  # where the engine's tools look for its config dir


FLAVOURS = {
    "elasticsearch": EngineFlavour(
        public_registry="docker.elastic.co",
        home="/usr/share/elasticsearch",
        java_opts_env="ES_JAVA_OPTS",
        superuser="elastic",
        password_env="ELASTIC_PASSWORD",
        initial_managers_setting="cluster.initial_master_nodes",
        security={
            "xpack.security.enabled": "true",
            # clients reach the engine only through the NetworkPolicy, over the client Service
            "xpack.security.http.ssl.enabled": "false",
            # a multi-node cluster with security must encrypt node-to-node traffic
            "xpack.security.transport.ssl.enabled": "true",
            "xpack.security.transport.ssl.verification_mode": "certificate",
            "xpack.security.transport.ssl.key": "certs/tls.key",
            "xpack.security.transport.ssl.certificate": "certs/tls.crt",
            "xpack.security.transport.ssl.certificate_authorities": "certs/ca.crt",
        },
        transport_tls=True,
        keystore_tool="bin/elasticsearch-keystore",
        path_conf_env="ES_PATH_CONF",
    ),
    "opensearch": EngineFlavour(
        public_registry="docker.io",
        home="/usr/share/opensearch",
        java_opts_env="OPENSEARCH_JAVA_OPTS",
        superuser="admin",
        password_env="OPENSEARCH_INITIAL_ADMIN_PASSWORD",
        initial_managers_setting="cluster.initial_cluster_manager_nodes",
        # the image's security setup (which sets the admin password) keeps transport TLS
        # with its own certificates; clients speak plain HTTP inside the NetworkPolicy
        security={"plugins.security.ssl.http.enabled": "false"},
        transport_tls=False,
        keystore_tool="bin/opensearch-keystore",
        path_conf_env="OPENSEARCH_PATH_CONF",
    ),
}


# -- names and small rules ---------------------------------------------------------------
def namespace_of(cluster_id: str, settings: KubernetesSection) -> str:
    return f"{settings.kube_namespace_prefix}{cluster_id}"


def endpoint_of(cluster_id: str, settings: KubernetesSection) -> str:
    """The client Service's cluster DNS name: what tenants and the platform dial."""
    return f"http://{ENGINE}.{namespace_of(cluster_id, settings)}.svc.{settings.kube_cluster_domain}:{HTTP_PORT}"


def engine_image(engine: str, settings: KubernetesSection, version: str | None = None) -> str:
    """<registry>/<repository>:<tag>; ESS_IMAGE_REGISTRY, when set, replaces every registry. The
    engine's default version (or None) has the tag of the settings; another version its own."""
    repository, tag = {
        "elasticsearch": (settings.elasticsearch_repository, settings.elasticsearch_image_tag),
        "opensearch": (settings.opensearch_repository, settings.opensearch_image_tag),
    }[engine]
    if version is not None and version != ENGINE_VERSIONS[engine][0]:
        tag = version
    registry = settings.image_registry.rstrip("/") or FLAVOURS[engine].public_registry
    return f"{registry}/{repository}:{tag}"


def version_of_image(engine: str, image: str, settings: KubernetesSection) -> str:
    """The engine version an image of `engine_image` runs (the settings' tag: the default)."""
    tag = image.rsplit(":", 1)[-1]
    return ENGINE_VERSIONS[engine][0] if image == engine_image(engine, settings) else tag


def node_heap_mb(memory: str) -> int:
    """Half of a node's memory limit (the rest is for Lucene's file cache), at most 31 GiB."""
    return min(MAX_HEAP_MB, parse_bytes(memory) // 2**20 // 2)


def pod_size(nodes: int, cpu: str, memory: str) -> EngineSize:
    """The size a spec runs at on Kubernetes: per node, unlike the local driver's one JVM."""
    return EngineSize(nodes=nodes, heap_mb=node_heap_mb(memory), processors=math.ceil(parse_cpu_millis(cpu) / 1000))


def size_of_statefulset(statefulset: Manifest) -> EngineSize | None:
    """Read back the size a live StatefulSet runs at; None when it is not one of ours."""
    try:
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        heap = next(int(m.group(1)) for v in env.values() if (m := re.search(r"-Xmx(\d+)m", v or "")))
        cpu = container["resources"]["limits"]["cpu"]
        return EngineSize(
            nodes=int(statefulset["spec"].get("replicas", 1)),
            heap_mb=heap,
            processors=math.ceil(parse_quantity(cpu)),
        )
    except (KeyError, IndexError, StopIteration, QuantityError, TypeError, ValueError):
        return None


def node_names(nodes: int) -> list[str]:
    """Pod names, which are also the engine's node names."""
    return [f"{ENGINE}-{i}" for i in range(nodes)]


def node_domains(cluster_id: str, settings: KubernetesSection) -> list[str]:
    """The names under which the nodes reach each other, for their transport certificate."""
    namespace = namespace_of(cluster_id, settings)
    base = f"{DISCOVERY_SERVICE}.{namespace}.svc"
    return [f"*.{base}.{settings.kube_cluster_domain}", f"*.{base}", f"*.{DISCOVERY_SERVICE}", DISCOVERY_SERVICE]


def cluster_labels(cluster: ClusterRecord) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: FIELD_MANAGER,
        TENANT_LABEL: cluster.tenant_org_id,
        CLUSTER_LABEL: cluster.id,
        SERVICE_LABEL: cluster.service_name,
    }


def pod_selector(cluster: ClusterRecord) -> dict[str, str]:
    return {CLUSTER_LABEL: cluster.id, COMPONENT_LABEL: ENGINE}


def pod_labels(cluster: ClusterRecord) -> dict[str, str]:
    return {
        **cluster_labels(cluster),
        **pod_selector(cluster),
        APP_LABEL: cluster.spec.engine,
        "app.kubernetes.io/version": cluster.spec.version,
    }


def object_metadata(name: str, cluster: ClusterRecord, settings: KubernetesSection) -> Manifest:
    return {"name": name, "namespace": namespace_of(cluster.id, settings), "labels": cluster_labels(cluster)}


# -- comparing with what the API holds ---------------------------------------------------
def spec_hash(manifest: Manifest) -> str:
    body = copy.deepcopy(manifest)
    body.get("metadata", {}).get("annotations", {}).pop(SPEC_HASH_ANNOTATION, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def stamp(manifest: Manifest) -> Manifest:
    """Annotate the object with a hash of itself: a field we stop rendering changes the hash,
    so the object is applied again and server-side apply removes that field."""
    stamped = copy.deepcopy(manifest)
    annotations = stamped["metadata"].setdefault("annotations", {})
    annotations.pop(SPEC_HASH_ANNOTATION, None)
    annotations[SPEC_HASH_ANNOTATION] = spec_hash(stamped)
    return stamped


def _same_scalar(live: Any, desired: Any) -> bool:
    if live == desired:
        return True
    if isinstance(live, str) and isinstance(desired, str):
        try:
            return parse_quantity(live) == parse_quantity(desired)  # the API prints 1024Mi as 1Gi
        except QuantityError:
            return False
    return False


def holds(live: Any, desired: Any) -> bool:
    """Whether the live object already carries every field we would apply, with our values;
    fields the API server added (defaults, status, metadata) do not matter."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and holds(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(holds, live, desired))
    return _same_scalar(live, desired)


def widen_quota(desired: Manifest, live: Manifest | None) -> Manifest:
    """The quota to hold while pods roll to a new size: each limit the larger of the live and
    the desired one, since a pod of the new size starts while the others still have the old."""
    if not live:
        return desired
    live_hard = live.get("spec", {}).get("hard", {})
    hard = desired["spec"]["hard"]
    wide = {}
    for key, value in hard.items():
        try:
            wide[key] = max(value, live_hard.get(key, value), key=parse_quantity)
        except QuantityError:
            wide[key] = value
    if all(_same_scalar(wide[k], v) for k, v in hard.items()):
        return desired
    widened = copy.deepcopy(desired)
    widened["spec"]["hard"] = wide
    return stamp(widened)


def pending_claim_note(claims: list[Manifest]) -> str | None:
    """Why the engine's volumes hold its pods back, if they do; None when every claim is bound."""
    for claim in claims:
        if claim.get("status", {}).get("phase") != "Pending":
            continue
        name, storage_class = claim["metadata"]["name"], claim.get("spec", {}).get("storageClassName")
        if not storage_class:
            # the API server fills in the default StorageClass when a claim is made; none was there
            return (f"volume claim {name} is Pending: the Kubernetes cluster has no default StorageClass; "
                    "mark one default (annotation storageclass.kubernetes.io/is-default-class=true) or set "
                    "ESS_STORAGE_CLASS")
        return (f"volume claim {name} is Pending on StorageClass {storage_class}: waiting for a volume; if it "
                "stays so, check that the class exists and its provisioner runs (the claim's events say why)")
    return None
