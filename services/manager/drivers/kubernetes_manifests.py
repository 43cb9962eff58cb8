"""The Kubernetes objects of one tenant cluster, rendered from its record: no I/O here.

What the kubernetes driver applies and `python -m services.manager render` prints. Each
cluster gets a namespace holding the engine's StatefulSet, a headless Service for
discovery and a client Service, its Secrets, a PodDisruptionBudget, a NetworkPolicy, a
ResourceQuota and a LimitRange, all sized from the cluster's spec. Also here: the rules
the driver shares with rendering (names, labels, heap, images, the size a StatefulSet
runs at) and the test of whether a live object already holds what would be applied.
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
    format_bytes,
    format_cpu_millis,
    parse_bytes,
    parse_cpu_millis,
    parse_quantity,
)
from libs.common.settings import ELASTICSEARCH_VERSION, ENGINE_VERSION, Settings
from services.manager.planning import EngineSize

Manifest = dict[str, Any]

ENGINE_VERSIONS = {"elasticsearch": [ELASTICSEARCH_VERSION], "opensearch": [ENGINE_VERSION]}
FIELD_MANAGER = "es-serverless"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
TENANT_LABEL = "es-serverless.io/tenant"
CLUSTER_LABEL = "es-serverless.io/cluster"
SERVICE_LABEL = "es-serverless.io/service"
COMPONENT_LABEL = "app.kubernetes.io/component"
USER_ANNOTATION = "es-serverless.io/user"
SPEC_HASH_ANNOTATION = "es-serverless.io/spec-hash"
PULL_SECRET_SOURCE_ANNOTATION = "es-serverless.io/copied-from"

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
    ),
}


# -- names and small rules ---------------------------------------------------------------
def namespace_of(cluster_id: str, settings: Settings) -> str:
    return f"{settings.kube_namespace_prefix}{cluster_id}"


def endpoint_of(cluster_id: str, settings: Settings) -> str:
    """The client Service's cluster DNS name: what tenants and the platform dial."""
    return f"http://{ENGINE}.{namespace_of(cluster_id, settings)}.svc.{settings.kube_cluster_domain}:{HTTP_PORT}"


def engine_image(engine: str, settings: Settings) -> str:
    """<registry>/<repository>:<tag>; ESS_IMAGE_REGISTRY, when set, replaces every registry."""
    repository, tag = {
        "elasticsearch": (settings.elasticsearch_repository, settings.elasticsearch_image_tag),
        "opensearch": (settings.opensearch_repository, settings.opensearch_image_tag),
    }[engine]
    registry = settings.image_registry.rstrip("/") or FLAVOURS[engine].public_registry
    return f"{registry}/{repository}:{tag}"


def node_heap_mb(memory: str) -> int:
    """Half of a node's memory limit (the rest is for Lucene's file cache), at most 31 GiB."""
    return min(MAX_HEAP_MB, parse_bytes(memory) // 2**20 // 2)


def pod_size(replicas: int, cpu: str, memory: str) -> EngineSize:
    """The size a spec runs at on Kubernetes: per node, unlike the local driver's one JVM."""
    return EngineSize(nodes=replicas, heap_mb=node_heap_mb(memory), processors=math.ceil(parse_cpu_millis(cpu) / 1000))


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


def node_names(replicas: int) -> list[str]:
    """Pod names, which are also the engine's node names."""
    return [f"{ENGINE}-{i}" for i in range(replicas)]


def node_domains(cluster_id: str, settings: Settings) -> list[str]:
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


def _pod_labels(cluster: ClusterRecord) -> dict[str, str]:
    return {
        **cluster_labels(cluster),
        **pod_selector(cluster),
        "app.kubernetes.io/name": cluster.spec.engine,
        "app.kubernetes.io/version": cluster.spec.version,
    }


def _metadata(name: str, cluster: ClusterRecord, settings: Settings) -> Manifest:
    return {"name": name, "namespace": namespace_of(cluster.id, settings), "labels": cluster_labels(cluster)}


# -- the objects -------------------------------------------------------------------------
def render_namespace(cluster: ClusterRecord, settings: Settings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace_of(cluster.id, settings),
            "labels": {
                **cluster_labels(cluster),
                # the engine pods meet the restricted profile; nothing laxer may run here
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
            "annotations": {USER_ANNOTATION: cluster.user},
        },
    }


def render_resource_quota(cluster: ClusterRecord, settings: Settings) -> Manifest:
    """The namespace holds exactly the cluster's nodes and volumes, and exposes nothing outside."""
    spec = cluster.spec
    cpu = format_cpu_millis(spec.replicas * parse_cpu_millis(spec.cpu))
    memory = format_bytes(spec.replicas * parse_bytes(spec.memory))
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _metadata(ENGINE, cluster, settings),
        "spec": {
            "hard": {
                "pods": str(spec.replicas),
                "requests.cpu": cpu,
                "limits.cpu": cpu,
                "requests.memory": memory,
                "limits.memory": memory,
                "persistentvolumeclaims": str(spec.replicas),
                "requests.storage": format_bytes(spec.replicas * parse_bytes(spec.storage)),
                "services.loadbalancers": "0",
                "services.nodeports": "0",
            }
        },
    }


def render_limit_range(cluster: ClusterRecord, settings: Settings) -> Manifest:
    """No container or volume in the namespace may be larger than one node of the spec."""
    spec = cluster.spec
    node = {"cpu": spec.cpu, "memory": spec.memory}
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _metadata(ENGINE, cluster, settings),
        "spec": {
            "limits": [
                {"type": "Container", "default": dict(node), "defaultRequest": dict(node), "max": dict(node)},
                {"type": "PersistentVolumeClaim", "max": {"storage": spec.storage}},
            ]
        },
    }


def render_credentials_secret(cluster: ClusterRecord, settings: Settings, password: str) -> Manifest:
    flavour = FLAVOURS[cluster.spec.engine]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(CREDENTIALS_SECRET, cluster, settings),
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": flavour.superuser, "password": password},
    }


def render_transport_tls_secret(
    cluster: ClusterRecord, settings: Settings, ca_pem: str, cert_pem: str, key_pem: str
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(TRANSPORT_TLS_SECRET, cluster, settings),
        "type": "kubernetes.io/tls",
        "stringData": {"ca.crt": ca_pem, "tls.crt": cert_pem, "tls.key": key_pem},
    }


def render_pull_secret_copy(cluster: ClusterRecord, settings: Settings, source: Manifest) -> Manifest:
    """A registry credential of the platform namespace, copied: pods only read their own namespace's."""
    name = source["metadata"]["name"]
    metadata = _metadata(name, cluster, settings)
    metadata["annotations"] = {PULL_SECRET_SOURCE_ANNOTATION: f"{settings.kube_platform_namespace}/{name}"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": source.get("type", "kubernetes.io/dockerconfigjson"),
        "data": dict(source.get("data") or {}),
    }


def render_network_policy(cluster: ClusterRecord, settings: Settings) -> Manifest:
    """Engine HTTP: the platform's namespace and the tenant's own namespaces; transport: the nodes only."""
    selector = pod_selector(cluster)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(ENGINE, cluster, settings),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {
                            "kubernetes.io/metadata.name": settings.kube_platform_namespace}}},
                        {"namespaceSelector": {"matchLabels": {TENANT_LABEL: cluster.tenant_org_id}}},
                    ],
                    "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
                },
                {
                    "from": [{"podSelector": {"matchLabels": selector}}],
                    "ports": [{"protocol": "TCP", "port": HTTP_PORT}, {"protocol": "TCP", "port": TRANSPORT_PORT}],
                },
            ],
        },
    }


def render_discovery_service(cluster: ClusterRecord, settings: Settings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(DISCOVERY_SERVICE, cluster, settings),
        "spec": {
            "clusterIP": "None",
            # nodes must find each other before any of them is ready
            "publishNotReadyAddresses": True,
            "selector": pod_selector(cluster),
            "ports": [
                {"name": "http", "protocol": "TCP", "port": HTTP_PORT, "targetPort": HTTP_PORT},
                {"name": "transport", "protocol": "TCP", "port": TRANSPORT_PORT, "targetPort": TRANSPORT_PORT},
            ],
        },
    }


def render_client_service(cluster: ClusterRecord, settings: Settings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ENGINE, cluster, settings),
        "spec": {
            "type": "ClusterIP",
            "selector": pod_selector(cluster),
            "ports": [{"name": "http", "protocol": "TCP", "port": HTTP_PORT, "targetPort": HTTP_PORT}],
        },
    }


def render_pod_disruption_budget(cluster: ClusterRecord, settings: Settings) -> Manifest:
    # one node at a time: a node drain never takes two copies of a shard away together
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(ENGINE, cluster, settings),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": pod_selector(cluster)}},
    }


def _engine_env(cluster: ClusterRecord, flavour: EngineFlavour) -> list[Manifest]:
    heap = node_heap_mb(cluster.spec.memory)
    settings_env = {
        "cluster.name": cluster.id,
        "network.host": "0.0.0.0",
        "discovery.seed_hosts": DISCOVERY_SERVICE,
        # the first node alone bootstraps, so growing the cluster later changes no node's settings
        flavour.initial_managers_setting: node_names(1)[0],
        # no privileged init container to raise vm.max_map_count: the restricted profile forbids it
        "node.store.allow_mmap": "false",
        **flavour.security,
    }
    return [
        {"name": "node.name", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": flavour.java_opts_env, "value": f"-Xms{heap}m -Xmx{heap}m"},
        {"name": flavour.password_env, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": "password"}}},
        *({"name": name, "value": value} for name, value in settings_env.items()),
    ]


def _readiness_probe(flavour: EngineFlavour) -> Manifest:
    # ready once this node sees a cluster at least yellow: every primary shard is assigned
    check = (
        f'curl -fsS -o /dev/null -u "{flavour.superuser}:${{{flavour.password_env}}}" '
        f'"http://127.0.0.1:{HTTP_PORT}/_cluster/health?wait_for_status=yellow&timeout=2s"'
    )
    return {
        "exec": {"command": ["/bin/sh", "-c", check]},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def render_statefulset(cluster: ClusterRecord, settings: Settings) -> Manifest:
    spec = cluster.spec
    flavour = FLAVOURS[spec.engine]
    node = {"cpu": spec.cpu, "memory": spec.memory}
    mounts = [{"name": DATA_VOLUME, "mountPath": f"{flavour.home}/data"}]
    volumes = []
    if flavour.transport_tls:
        mounts.append({"name": "transport-tls", "mountPath": f"{flavour.home}/config/certs", "readOnly": True})
        volumes.append({"name": "transport-tls", "secret": {"secretName": TRANSPORT_TLS_SECRET}})
    container = {
        "name": spec.engine,
        "image": engine_image(spec.engine, settings),
        "imagePullPolicy": settings.image_pull_policy,
        "env": _engine_env(cluster, flavour),
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "transport", "containerPort": TRANSPORT_PORT, "protocol": "TCP"},
        ],
        # requests equal limits: the engine's heap is sized from the limit and must not be squeezed
        "resources": {"requests": dict(node), "limits": dict(node)},
        "readinessProbe": _readiness_probe(flavour),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
    }
    pod_spec: Manifest = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 120,
        "securityContext": {
            "runAsUser": ENGINE_UID,
            "runAsGroup": ENGINE_UID,
            "fsGroup": ENGINE_UID,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": pod_selector(cluster)},
                        },
                    }
                ]
            }
        },
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    claim_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage}},
    }
    if settings.storage_class:
        claim_spec["storageClassName"] = settings.storage_class
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(ENGINE, cluster, settings),
        "spec": {
            "replicas": spec.replicas,
            "serviceName": DISCOVERY_SERVICE,
            # all nodes start together: a cluster needs a quorum of them before any is ready
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            # nodes are drained before they go, so their volumes hold nothing left to keep
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Delete"},
            "selector": {"matchLabels": pod_selector(cluster)},
            "template": {"metadata": {"labels": _pod_labels(cluster)}, "spec": pod_spec},
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": DATA_VOLUME, "labels": cluster_labels(cluster)},
                    "spec": claim_spec,
                }
            ],
        },
    }


def render_cluster(cluster: ClusterRecord, settings: Settings) -> list[Manifest]:
    """Every object of the cluster but its Secrets, stamped, in the order they are applied:
    the namespace and its bounds first, the StatefulSet that needs all the others last."""
    renderers = [
        render_namespace, render_resource_quota, render_limit_range, render_network_policy,
        render_discovery_service, render_client_service, render_pod_disruption_budget, render_statefulset,
    ]
    return [stamp(render(cluster, settings)) for render in renderers]


def render_for_review(cluster: ClusterRecord, settings: Settings) -> list[Manifest]:
    """What `render` prints: the applied objects, with placeholders where Secrets get generated values."""
    objects = render_cluster(cluster, settings)
    secrets = [render_credentials_secret(cluster, settings, GENERATED_PLACEHOLDER)]
    if FLAVOURS[cluster.spec.engine].transport_tls:
        secrets.append(render_transport_tls_secret(cluster, settings, *[GENERATED_PLACEHOLDER] * 3))
    for name in settings.image_pull_secrets:
        pull_secret = render_pull_secret_copy(cluster, settings, {"metadata": {"name": name}})
        del pull_secret["data"]
        pull_secret["stringData"] = {".dockerconfigjson": COPIED_PLACEHOLDER}
        secrets.append(pull_secret)
    return objects[:1] + secrets + objects[1:]


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
