"""The `kubernetes` driver: each tenant cluster is a namespace on a Kubernetes API server.

It owns the conversation with the API server: objects rendered by `kubernetes_manifests`
go out with server-side apply under the field manager `es-serverless`, and an object whose
live state already holds what would be sent is not sent at all, so applying an unchanged
spec again writes nothing and a changed spec touches only the objects that changed.
Generated Secrets are made once and never replaced. Only the official `kubernetes` client
talks to the API (its blocking calls run in worker threads); the engine itself is asked
only for its health and, before nodes go away, to move their shards elsewhere
(`kubernetes_engine`, which also bounds how long a drain may stall).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any, NamedTuple

import structlog
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from libs.common.engines import connect_engine
from libs.common.models import ClusterRecord, ClusterSpec, EngineCredentials, utcnow
from services.manager.settings import KubernetesDriverSettings
from services.manager.drivers import EngineUnavailable, Stored, flush_and_measure
from services.manager.drivers.kubernetes_backups import render_s3_keys_secret
from services.manager.drivers.kubernetes_engine import ConnectEngine, EngineCalls
from services.manager.drivers.kubernetes_rolling import UpgradeSteps
from services.manager.drivers.kubernetes_upgrade import pod_versions
from services.manager.drivers.kubernetes_manifests import (
    render_cluster,
    render_credentials_secret,
    render_pull_secret_copy,
    render_transport_tls_secret,
)
from services.manager.drivers.kubernetes_rules import (
    CLUSTER_LABEL,
    CREDENTIALS_SECRET,
    ENGINE,
    ENGINE_VERSIONS,
    FIELD_MANAGER,
    FLAVOURS,
    MANAGED_BY_LABEL,
    TRANSPORT_TLS_SECRET,
    Manifest,
    endpoint_of,
    holds,
    namespace_of,
    node_domains,
    node_names,
    pending_claim_note,
    pod_size,
    size_of_statefulset,
    stamp,
    widen_quota,
)
from services.manager.drivers.kubernetes_secrets import generate_password, issue_transport_certificates
from services.manager.planning import EngineObservation, EngineSize

APPLY = "application/apply-patch+yaml"
REFUSALS = (400, 401, 403, 422)  # the API will answer the same next time: a person must act


class KindCalls(NamedTuple):
    """Where the typed client keeps one kind: its API group and its read and patch methods."""

    group: str
    read: str
    patch: str


# every kind is namespaced but Namespace itself
_CALLS = {
    "Namespace": KindCalls("core", "read_namespace", "patch_namespace"),
    "ResourceQuota": KindCalls("core", "read_namespaced_resource_quota", "patch_namespaced_resource_quota"),
    "LimitRange": KindCalls("core", "read_namespaced_limit_range", "patch_namespaced_limit_range"),
    "Secret": KindCalls("core", "read_namespaced_secret", "patch_namespaced_secret"),
    "Service": KindCalls("core", "read_namespaced_service", "patch_namespaced_service"),
    "NetworkPolicy": KindCalls("networking", "read_namespaced_network_policy", "patch_namespaced_network_policy"),
    "PodDisruptionBudget": KindCalls("policy", "read_namespaced_pod_disruption_budget",
                                     "patch_namespaced_pod_disruption_budget"),
    "StatefulSet": KindCalls("apps", "read_namespaced_stateful_set", "patch_namespaced_stateful_set"),
}


def connect_api(settings: KubernetesDriverSettings) -> client.ApiClient:
    """An API client from the pod's service account or from a kubeconfig file."""
    configuration = client.Configuration()
    try:
        if settings.kube_in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=str(settings.kube_config) if settings.kube_config else None,
                context=settings.kube_context, client_configuration=configuration,
            )
    except (config.ConfigException, OSError) as exc:
        raise ValueError(
            f"kubernetes driver cannot reach an API server ({exc}); in a pod set ESS_KUBE_IN_CLUSTER=true, "
            "elsewhere point ESS_KUBE_CONFIG at a kubeconfig"
        ) from exc
    return client.ApiClient(configuration)


def _refusal(exc: ApiException, what: str) -> EngineUnavailable:
    try:
        message = json.loads(exc.body or "{}").get("message", exc.reason)
    except ValueError:
        message = exc.reason
    fix = " (grant it in deploy/kubernetes/base/rbac.yaml)" if exc.status == 403 else ""
    return EngineUnavailable(f"the Kubernetes API refused to {what}: {exc.status} {message}{fix}")


class KubernetesDriver(UpgradeSteps):
    engine_versions = ENGINE_VERSIONS
    engine_lacks: dict[str, frozenset[str]] = {}  # the official images carry every module

    def __init__(
        self, settings: KubernetesDriverSettings, api: client.ApiClient | None = None, connect: ConnectEngine = connect_engine
    ):
        self._settings = settings
        api = api or connect_api(settings)
        self._apis = {
            "core": client.CoreV1Api(api),
            "apps": client.AppsV1Api(api),
            "policy": client.PolicyV1Api(api),
            "networking": client.NetworkingV1Api(api),
        }
        self._engines = EngineCalls(settings, connect)
        self._connect = connect
        self._credentials: dict[str, EngineCredentials] = {}
        # quotas held wide while pods roll to a smaller size, settled once they have
        self._settling: dict[str, Manifest] = {}
        self._drained: dict[str, ClusterRecord] = {}  # shrunk clusters whose exclusions go once rolled out
        self._green_wait: dict[str, float] = {}  # cluster -> since when an upgrade step waits for green
        self._log = structlog.get_logger("kubernetes-driver")

    def size_for(self, spec: ClusterSpec) -> EngineSize:
        return pod_size(spec.replicas, spec.cpu, spec.memory)

    # -- talking to the API server (blocking; called in worker threads) --------------------
    def _method(self, kind: str, verb: str) -> Callable[..., Any]:
        calls = _CALLS[kind]
        return getattr(self._apis[calls.group], getattr(calls, verb))

    def _read(self, kind: str, namespace: str, name: str) -> Manifest | None:
        args = (name,) if kind == "Namespace" else (name, namespace)
        try:
            return json.loads(self._method(kind, "read")(*args, _preload_content=False).data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _send(self, manifest: Manifest) -> None:
        metadata = manifest["metadata"]
        args = (metadata["name"],) if manifest["kind"] == "Namespace" else (metadata["name"], metadata["namespace"])
        # force: the platform owns these objects; a hand edit of one of our fields is undone
        self._method(manifest["kind"], "patch")(
            *args, body=manifest, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
            _preload_content=False,
        )
        self._log.info("applied", kind=manifest["kind"], name=metadata["name"], namespace=metadata.get("namespace"))

    def _apply(self, manifest: Manifest, live: Manifest | None = None) -> bool:
        """Server-side apply, unless the live object already holds all of it; True if sent."""
        metadata = manifest["metadata"]
        if live is None:
            live = self._read(manifest["kind"], metadata.get("namespace", ""), metadata["name"])
        if live is not None and holds(live, manifest):
            return False
        self._send(manifest)
        return True

    def _ensure_generated(self, kind: str, namespace: str, name: str, make: Callable[[], Manifest]) -> None:
        """Generated once: an existing Secret keeps its values, whatever we would generate now."""
        if self._read(kind, namespace, name) is None:
            self._send(make())

    def _apply_cluster(self, cluster: ClusterRecord, partition: int = 0, rolling_from: str | None = None) -> None:
        objects = render_cluster(cluster, self._settings, partition, rolling_from)
        self._apply(objects[0])  # the namespace first: everything else lives in it
        self._ensure_secrets(cluster)
        for manifest in objects[1:]:
            if manifest["kind"] == "ResourceQuota":
                self._apply_quota(cluster, manifest)
            else:
                self._apply(manifest)

    def _ensure_secrets(self, cluster: ClusterRecord) -> None:
        settings = self._settings
        namespace = namespace_of(cluster.id, settings)
        self._ensure_generated("Secret", namespace, CREDENTIALS_SECRET, lambda: render_credentials_secret(
            cluster, settings, generate_password()))
        if FLAVOURS[cluster.spec.engine].transport_tls:
            def make_tls() -> Manifest:
                certs = issue_transport_certificates(cluster.id, node_domains(cluster.id, settings), utcnow())
                return render_transport_tls_secret(cluster, settings, certs.ca_pem, certs.cert_pem, certs.key_pem)

            self._ensure_generated("Secret", namespace, TRANSPORT_TLS_SECRET, make_tls)
        if (s3_keys := render_s3_keys_secret(cluster, settings)) is not None:  # follows the settings' keys
            self._apply(s3_keys)
        for name in settings.image_pull_secrets:
            source = self._read_pull_secret(name)
            if source is None:
                raise EngineUnavailable(
                    f"image pull secret {name!r} not found in namespace {settings.kube_platform_namespace}; "
                    "create it there or change ESS_IMAGE_PULL_SECRETS"
                )
            self._apply(stamp(render_pull_secret_copy(cluster, settings, source)))

    def _read_pull_secret(self, name: str) -> Manifest | None:
        try:
            return self._read("Secret", self._settings.kube_platform_namespace, name)
        except ApiException as exc:
            if exc.status != 403:
                raise
            # the base ClusterRole names no pull secret: only the component grants one by name
            raise EngineUnavailable(
                f"the manager may not read the image pull secret {name!r} in namespace "
                f"{self._settings.kube_platform_namespace} (403): add the component "
                "deploy/kubernetes/components/image-pull-secrets to your kustomization with that name in its "
                "resourceNames (the air-gapped overlay does this for regcred)") from exc

    def _apply_quota(self, cluster: ClusterRecord, quota: Manifest) -> None:
        """Apply the quota, held wide while pods of a larger size still run (settled in `observe`)."""
        live = self._read("ResourceQuota", quota["metadata"]["namespace"], ENGINE)
        held = widen_quota(quota, live)
        if held is quota:
            self._settling.pop(cluster.id, None)
        else:
            self._settling[cluster.id] = quota
        self._apply(held, live)

    def _statefulset(self, cluster_id: str) -> Manifest | None:
        return self._read("StatefulSet", namespace_of(cluster_id, self._settings), ENGINE)

    def _read_credentials(self, cluster_id: str) -> EngineCredentials | None:
        if cluster_id not in self._credentials:
            secret = self._read("Secret", namespace_of(cluster_id, self._settings), CREDENTIALS_SECRET)
            if secret is None or not secret.get("data"):
                return None
            data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            self._credentials[cluster_id] = EngineCredentials(username=data["username"], password=data["password"])
        return self._credentials[cluster_id]

    def _delete_namespace(self, cluster_id: str) -> bool:
        """Delete the cluster's namespace if it is ours; False when there is none to wait for."""
        namespace = namespace_of(cluster_id, self._settings)
        live = self._read("Namespace", "", namespace)
        if live is None:
            return False
        labels = live.get("metadata", {}).get("labels", {})
        if labels.get(MANAGED_BY_LABEL) != FIELD_MANAGER or labels.get(CLUSTER_LABEL) != cluster_id:
            self._log.warning("not deleting a namespace the platform did not create", namespace=namespace)
            return False
        try:
            self._apis["core"].delete_namespace(namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
        return True

    def _pending_claims(self, cluster_id: str) -> str | None:
        namespace = namespace_of(cluster_id, self._settings)
        answer = self._apis["core"].list_namespaced_persistent_volume_claim(namespace, _preload_content=False)
        return pending_claim_note(json.loads(answer.data).get("items", []))

    def _list_cluster_namespaces(self) -> list[Manifest]:
        selector = f"{MANAGED_BY_LABEL}={FIELD_MANAGER},{CLUSTER_LABEL}"
        answer = self._apis["core"].list_namespace(label_selector=selector, _preload_content=False)
        return json.loads(answer.data).get("items", [])

    # -- the Driver protocol ---------------------------------------------------------------
    async def _api(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(call, *args)
        except ApiException as exc:
            if exc.status in REFUSALS:
                raise _refusal(exc, what) from exc
            raise  # temporary: the next reconcile pass tries again

    async def observe(self, cluster_id: str) -> EngineObservation:
        statefulset = await self._api("read the StatefulSet", self._statefulset, cluster_id)
        if statefulset is None or not (statefulset["spec"].get("replicas") or statefulset.get("status", {}).get("replicas")):
            return EngineObservation(running=False)  # none, or hibernated: no pod runs
        credentials = await self._api("read the credentials", self._read_credentials, cluster_id)
        endpoint = endpoint_of(cluster_id, self._settings)
        spec, status = statefulset.get("spec", {}), statefulset.get("status", {})
        wanted = spec.get("replicas", 1)
        ready = status.get("readyReplicas", 0)
        rolled_out = (
            status.get("observedGeneration", 0) >= statefulset["metadata"].get("generation", 0)
            and status.get("updatedReplicas", 0) == wanted
            and status.get("replicas", 0) == wanted
        )
        size = size_of_statefulset(statefulset)
        engine = statefulset["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name", "elasticsearch")
        versions = pod_versions(statefulset, engine, self._settings)
        if not (rolled_out and ready == wanted):
            note = await self._api("list the volume claims", self._pending_claims, cluster_id)
            return EngineObservation(True, size, None, ready, endpoint, credentials, note=note, versions=versions)
        if cluster_id in self._settling:
            await self._api("settle the ResourceQuota", self._apply, self._settling.pop(cluster_id))
        if cluster_id in self._drained:  # the drained pods are gone: their names may hold shards again
            await self._lift_exclusions(self._drained.pop(cluster_id))
        health = await self._engines.health(engine, endpoint, credentials, ready)
        return EngineObservation(True, size, health.status, ready, endpoint, credentials,
                                 note=health.note, probes_only=health.probes_only, versions=versions)

    async def start(self, cluster: ClusterRecord, size: EngineSize) -> str:
        await self._api("apply the cluster", self._apply_cluster, cluster)
        return endpoint_of(cluster.id, self._settings)

    async def resize(self, cluster: ClusterRecord, old: EngineSize | None, new: EngineSize) -> str:
        """Apply the new size; nodes that go away are drained first, nodes that come back
        (drained by an earlier shrink) are let in again. An upgrade under way takes its next step
        first (kubernetes_rolling.py)."""
        live = await self._api("read the StatefulSet", self._statefulset, cluster.id)
        if live is not None:
            await self._upgrade_step(cluster, live, new.nodes)
        before = old.nodes if old else new.nodes
        if new.nodes < before:
            await self._drain(cluster, node_names(before)[new.nodes:], new.nodes)
            self._drained[cluster.id] = cluster
        elif new.nodes > before:
            await self._lift_exclusions(cluster)
        return await self.start(cluster, new)

    async def _drain(self, cluster: ClusterRecord, leaving: list[str], remaining: int) -> None:
        credentials = await self._api("read the credentials", self._read_credentials, cluster.id)
        await self._engines.drain(cluster.id, cluster.spec.engine, endpoint_of(cluster.id, self._settings),
                                  credentials, leaving, remaining)

    async def _lift_exclusions(self, cluster: ClusterRecord) -> None:
        credentials = await self._api("read the credentials", self._read_credentials, cluster.id)
        await self._engines.lift_exclusions(cluster.id, cluster.spec.engine, endpoint_of(cluster.id, self._settings),
                                            credentials)

    async def hibernate(self, cluster: ClusterRecord) -> Stored | None:
        """Flush, then scale the StatefulSet to 0: the claims stay, and `start` scales it back."""
        credentials = await self._api("read the credentials", self._read_credentials, cluster.id)
        user, password = (credentials.username, credentials.password) if credentials else (None, None)
        engine = self._connect(cluster.spec.engine, endpoint_of(cluster.id, self._settings), user, password)
        stored = await flush_and_measure(engine, self._settings.kube_engine_timeout_s)
        statefulset = next(m for m in render_cluster(cluster, self._settings) if m["kind"] == "StatefulSet")
        statefulset["spec"]["replicas"] = 0
        # a scale-in deletes the claims of the nodes that go; a hibernation must keep every one
        statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = "Retain"
        await self._api("scale the StatefulSet to 0", self._send, statefulset)
        return stored

    async def rotate_credentials(self, cluster: ClusterRecord) -> EngineCredentials:
        """A new password: set in the engine first (the old one authenticates it), then in the Secret."""
        current = await self._api("read the credentials", self._read_credentials, cluster.id)
        if current is None:
            raise EngineUnavailable(f"cluster {cluster.id} has no credentials Secret yet; retry once it is ready")
        new = EngineCredentials(username=current.username, password=generate_password())
        search = self._connect(cluster.spec.engine, endpoint_of(cluster.id, self._settings),
                               current.username, current.password)
        try:
            await asyncio.wait_for(search.change_password(current.password, new.password),
                                   self._settings.kube_engine_timeout_s)
        finally:
            await search.close()
        await self._api("store the new credentials", self._send,
                        render_credentials_secret(cluster, self._settings, new.password))
        self._credentials[cluster.id] = new
        return new

    async def remove(self, cluster_id: str) -> None:
        """Delete the namespace (the API server deletes all in it) and wait until it is gone."""
        self._credentials.pop(cluster_id, None)
        self._settling.pop(cluster_id, None)
        self._drained.pop(cluster_id, None)
        self._engines.forget(cluster_id)
        if not await self._api("delete the namespace", self._delete_namespace, cluster_id):
            return
        namespace = namespace_of(cluster_id, self._settings)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.kube_delete_timeout_s
        while await self._api("read the namespace", self._read, "Namespace", "", namespace) is not None:
            if loop.time() > deadline:
                raise TimeoutError(f"namespace {namespace} still terminating after "
                                   f"{self._settings.kube_delete_timeout_s:.0f} s; see its finalizers")
            await asyncio.sleep(1.0)
        self._log.info("namespace deleted", cluster=cluster_id, namespace=namespace)

    async def orphans(self, known_ids: set[str]) -> set[str]:
        """Clusters whose namespace exists but no record knows them; ones already going are left to go."""
        namespaces = await self._api("list namespaces", self._list_cluster_namespaces)
        found = set()
        for namespace in namespaces:
            metadata = namespace.get("metadata", {})
            labels = metadata.get("labels", {})
            cluster_id = labels.get(CLUSTER_LABEL)
            # the label selector asked the server for these; checked again because deleting a
            # namespace that is not ours would be unrecoverable
            if (labels.get(MANAGED_BY_LABEL) == FIELD_MANAGER and cluster_id
                    and metadata.get("name") == namespace_of(cluster_id, self._settings)
                    and not metadata.get("deletionTimestamp")):
                found.add(cluster_id)
        return found - known_ids

    def start_queued(self, cluster: ClusterRecord, size: EngineSize) -> str | None:
        return None  # the scheduler places pods; nothing here shares one machine's cores

    def keep_warm(self) -> None:
        """Nothing kept warm here: a pod's start is the image's (README, Kubernetes)."""
