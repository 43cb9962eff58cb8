"""The Kubernetes objects of one tenant cluster, rendered from its record: no I/O here.

What the kubernetes driver applies and `python -m services.manager render` prints. Each
cluster gets a namespace holding the engine's StatefulSet, a headless Service for
discovery and a client Service, its Secrets, a PodDisruptionBudget, a NetworkPolicy, a
ResourceQuota and a LimitRange, all sized from the cluster's spec (the rules they follow are
in `kubernetes_rules`).
"""

from __future__ import annotations

import json

from libs.common.models import ClusterRecord, utcnow
from libs.common.quantities import format_bytes, format_cpu_millis, parse_bytes, parse_cpu_millis
from services.manager.settings import KubernetesDriverSettings
from services.manager.drivers.kubernetes_rules import (
    Manifest,
    APP_LABEL,
    COPIED_PLACEHOLDER,
    CREDENTIALS_SECRET,
    DATA_VOLUME,
    DISCOVERY_SERVICE,
    ENGINE,
    ENGINE_CLIENTS,
    ENGINE_UID,
    EngineFlavour,
    FLAVOURS,
    GENERATED_PLACEHOLDER,
    HTTP_PORT,
    NAMESPACE_NAME_LABEL,
    PULL_SECRET_SOURCE_ANNOTATION,
    ROLLING_FROM_ANNOTATION,
    TRANSPORT_PORT,
    TRANSPORT_TLS_SECRET,
    USER_ANNOTATION,
    cluster_labels,
    engine_image,
    namespace_of,
    object_metadata,
    node_heap_mb,
    node_domains,
    node_names,
    pod_labels,
    pod_selector,
    stamp,
)
from services.manager.drivers.kubernetes_backups import KEYS_PLACEHOLDER, add_s3_client, render_s3_keys_secret
from services.manager.drivers.kubernetes_secrets import issue_transport_certificates


# -- the objects -------------------------------------------------------------------------
def render_namespace(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> Manifest:
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


def render_resource_quota(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> Manifest:
    """The namespace holds exactly the cluster's nodes and volumes, and exposes nothing outside."""
    spec = cluster.spec
    cpu = format_cpu_millis(spec.replicas * parse_cpu_millis(spec.cpu))
    memory = format_bytes(spec.replicas * parse_bytes(spec.memory))
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": object_metadata(ENGINE, cluster, settings),
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


def render_limit_range(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> Manifest:
    """No container or volume in the namespace may be larger than one node of the spec."""
    spec = cluster.spec
    node = {"cpu": spec.cpu, "memory": spec.memory}
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": object_metadata(ENGINE, cluster, settings),
        "spec": {
            "limits": [
                {"type": "Container", "default": dict(node), "defaultRequest": dict(node), "max": dict(node)},
                {"type": "PersistentVolumeClaim", "max": {"storage": spec.storage}},
            ]
        },
    }


def render_credentials_secret(cluster: ClusterRecord, settings: KubernetesDriverSettings, password: str) -> Manifest:
    flavour = FLAVOURS[cluster.spec.engine]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_metadata(CREDENTIALS_SECRET, cluster, settings),
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": flavour.superuser, "password": password},
    }


def render_transport_tls_secret(
    cluster: ClusterRecord, settings: KubernetesDriverSettings, ca_pem: str, cert_pem: str, key_pem: str
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_metadata(TRANSPORT_TLS_SECRET, cluster, settings),
        "type": "kubernetes.io/tls",
        "stringData": {"ca.crt": ca_pem, "tls.crt": cert_pem, "tls.key": key_pem},
    }


def render_pull_secret_copy(cluster: ClusterRecord, settings: KubernetesDriverSettings, source: Manifest) -> Manifest:
    """A registry credential of the platform namespace, copied: pods only read their own namespace's."""
    name = source["metadata"]["name"]
    metadata = object_metadata(name, cluster, settings)
    metadata["annotations"] = {PULL_SECRET_SOURCE_ANNOTATION: f"{settings.kube_platform_namespace}/{name}"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": source.get("type", "kubernetes.io/dockerconfigjson"),
        "data": dict(source.get("data") or {}),
    }


def render_network_policy(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> Manifest:
    """Engine HTTP: only the platform's services that dial engines; every port: the cluster's own nodes.
    Tenants' clients come through the gateway, so no tenant namespace is let in."""
    selector = pod_selector(cluster)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_metadata(ENGINE, cluster, settings),
        "spec": {
            "podSelector": {"matchLabels": selector},
            # egress stays open: the S3 endpoint is a host name, which no policy can match, and DNS differs by site
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    # one peer, both selectors: those pods of that namespace, not MinIO or others beside them
                    "from": [{
                        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: settings.kube_platform_namespace}},
                        "podSelector": {"matchExpressions": [
                            {"key": APP_LABEL, "operator": "In", "values": list(ENGINE_CLIENTS)}]},
                    }],
                    "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
                },
                # transport, and HTTP a node forwards to another
                {"from": [{"podSelector": {"matchLabels": selector}}]},
            ],
        },
    }


def render_discovery_service(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(DISCOVERY_SERVICE, cluster, settings),
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


def render_client_service(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(ENGINE, cluster, settings),
        "spec": {
            "type": "ClusterIP",
            "selector": pod_selector(cluster),
            "ports": [{"name": "http", "protocol": "TCP", "port": HTTP_PORT, "targetPort": HTTP_PORT}],
        },
    }


def render_pod_disruption_budget(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> Manifest:
    # one node at a time: a node drain never takes two copies of a shard away together
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_metadata(ENGINE, cluster, settings),
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


def render_statefulset(cluster: ClusterRecord, settings: KubernetesDriverSettings, partition: int = 0,
                       rolling_from: str | None = None) -> Manifest:
    """`partition`: pods from that ordinal up run the template (the driver steps it down, one node
    at a time, through an upgrade; 0 otherwise); `rolling_from`: the version the others still run."""
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
        "image": engine_image(spec.engine, settings, spec.version),
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
    add_s3_client(pod_spec, container, cluster, settings)
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    claim_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage}},
    }
    if settings.storage_class:
        claim_spec["storageClassName"] = settings.storage_class
    metadata = object_metadata(ENGINE, cluster, settings)
    if rolling_from:
        metadata.setdefault("annotations", {})[ROLLING_FROM_ANNOTATION] = rolling_from
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata,
        "spec": {
            "replicas": spec.replicas,
            "serviceName": DISCOVERY_SERVICE,
            # all nodes start together: a cluster needs a quorum of them before any is ready
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            # nodes are drained before they go, so their volumes hold nothing left to keep
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Delete"},
            "selector": {"matchLabels": pod_selector(cluster)},
            "template": {"metadata": {"labels": pod_labels(cluster)}, "spec": pod_spec},
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


def render_cluster(cluster: ClusterRecord, settings: KubernetesDriverSettings, partition: int = 0,
                   rolling_from: str | None = None) -> list[Manifest]:
    """Every object of the cluster but its Secrets, stamped, in the order they are applied:
    the namespace and its bounds first, the StatefulSet that needs all the others last."""
    renderers = [
        render_namespace, render_resource_quota, render_limit_range, render_network_policy,
        render_discovery_service, render_client_service, render_pod_disruption_budget,
    ]
    return [*(stamp(render(cluster, settings)) for render in renderers),
            stamp(render_statefulset(cluster, settings, partition, rolling_from))]


def render_for_review(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> list[Manifest]:
    """What `render` prints: the applied objects, with placeholders where Secrets get generated values."""
    objects = render_cluster(cluster, settings)
    secrets = [render_credentials_secret(cluster, settings, GENERATED_PLACEHOLDER)]
    if FLAVOURS[cluster.spec.engine].transport_tls:
        # a placeholder is no PEM, which the API server warns about: certificates made for this output
        certs = issue_transport_certificates(cluster.id, node_domains(cluster.id, settings), utcnow())
        secrets.append(render_transport_tls_secret(cluster, settings, certs.ca_pem, certs.cert_pem, certs.key_pem))
    if (s3_keys := render_s3_keys_secret(cluster, settings)) is not None:
        # the manager's keys are never printed
        s3_keys["stringData"] = {key: KEYS_PLACEHOLDER for key in s3_keys.pop("data")}
        secrets.append(s3_keys)
    for name in settings.image_pull_secrets:
        pull_secret = render_pull_secret_copy(cluster, settings, {"metadata": {"name": name}})
        del pull_secret["data"]
        # still a docker config, as the API server requires of this type
        pull_secret["stringData"] = {".dockerconfigjson": json.dumps({"auths": {}, "placeholder": COPIED_PLACEHOLDER})}
        secrets.append(pull_secret)
    return objects[:1] + secrets + objects[1:]
