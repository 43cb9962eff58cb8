"""deploy/kubernetes and `render` against a real API server: the control plane's manifests are
accepted and its pods come up, its NetworkPolicies as the server holds them let in only each
port's callers, the manager's ClusterRole is enough for the driver and every rule of it is
needed, pull secrets need the component that names them, and what `render` prints is accepted
without a warning.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from kubernetes import client, dynamic

from services.manager.drivers import EngineUnavailable
from services.manager.drivers.kubernetes_manifests import render_for_review
from tests.deployment import kustomize_build
from tests.kube_cluster import ControlPlane
from tests.kube_testing import FakeEngine, make_driver, record, until
from tests.network_policies import OUTSIDE, Pod, admits

PLATFORM = "es-serverless"


def manager_role(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "es-serverless-manager")


def identity(plane: ControlPlane, name: str, rules: list[dict]) -> str:
    """A ServiceAccount `name` in the platform namespace bound to a ClusterRole of `rules`; its token."""
    plane.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": PLATFORM}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": PLATFORM}]},
    ])
    return plane.token_of(PLATFORM, name)


async def rbac_in_force(plane: ControlPlane, name: str, rule: dict) -> None:
    """The authorizer learns of new bindings through a watch: wait until it allows one of the rule's verbs."""
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=f"system:serviceaccount:{PLATFORM}:{name}", groups=["system:serviceaccounts"],
        resource_attributes=client.V1ResourceAttributes(
            group=rule["apiGroups"][0], resource=rule["resources"][0], verb=rule["verbs"][0],
            name=(rule.get("resourceNames") or [None])[0], namespace="ess-any")))
    api = client.AuthorizationV1Api(plane.admin())
    await until(lambda: api.create_subject_access_review(review).status.allowed, f"{name}'s role in force", 10)


async def a_short_life(driver, cluster_id: str) -> None:
    """Every kind of call the driver makes: apply, read back, list claims, list and delete namespaces."""
    cluster = record(cluster_id)
    await driver.start(cluster, driver.size_for(cluster.spec))
    await driver.observe(cluster_id)
    await driver.orphans(set())
    await driver.remove(cluster_id)


async def test_the_control_plane_manifests_are_accepted_and_its_pods_come_up(control_plane):
    apps = client.AppsV1Api(control_plane.admin())
    for name in ("manager", "shard-controller", "reporting"):  # two replicas each, each with its budget
        await until(lambda: apps.read_namespaced_deployment(name, PLATFORM).status.available_replicas == 2,
                    f"deployment {name}: 2 replicas available")
        assert client.PolicyV1Api(control_plane.admin()).read_namespaced_pod_disruption_budget(
            name, PLATFORM).spec.min_available == 1
    # three servers of one JetStream cluster, each with its own volume
    await until(lambda: apps.read_namespaced_stateful_set("nats", PLATFORM).status.ready_replicas == 3,
                "3 nats servers ready, their volumes bound")
    budget = client.PolicyV1Api(control_plane.admin()).read_namespaced_pod_disruption_budget("nats", PLATFORM)
    assert budget.spec.max_unavailable == 1
    # the air-gapped overlay changes the same objects: the server validates it without storing it
    api = dynamic.DynamicClient(control_plane.admin())
    for obj in kustomize_build("deploy/kubernetes/overlays/air-gapped"):
        resource = api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        api.server_side_apply(resource, body=obj, name=obj["metadata"]["name"],
                              namespace=obj["metadata"].get("namespace"), field_manager="review",
                              force_conflicts=True, dry_run="All")


async def test_the_platforms_network_policies_held_keep_metrics_ports_and_nats_to_their_callers(control_plane):
    core, api = client.CoreV1Api(control_plane.admin()), client.ApiClient()
    # list items come without their kind
    policies = [{**api.sanitize_for_serialization(p), "kind": "NetworkPolicy"} for p in
                client.NetworkingV1Api(control_plane.admin()).list_namespaced_network_policy(PLATFORM).items]
    built = [o for o in kustomize_build("deploy/kubernetes") if o["kind"] == "NetworkPolicy"]
    assert sorted(p["metadata"]["name"] for p in policies) == sorted(o["metadata"]["name"] for o in built)

    def as_pod(namespace: str, labels: dict) -> Pod:
        return Pod(namespace, labels, core.read_namespace(namespace).metadata.labels or {})

    def pod_of(name: str) -> Pod | None:
        live = core.list_namespaced_pod(PLATFORM, label_selector=f"app.kubernetes.io/name={name}").items
        return as_pod(PLATFORM, live[0].metadata.labels) if live else None

    pods = {name: await until(lambda: pod_of(name), f"a {name} pod")
            for name in ("gateway", "manager", "reporting", "shard-controller", "nats")}
    monitoring = f"monitoring-{uuid.uuid4().hex[:6]}"
    control_plane.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": monitoring, "labels": {"es-serverless.io/monitoring": "true"}}}])
    try:
        prometheus, elsewhere = as_pod(monitoring, {}), as_pod("default", {})
        for name, port in (("reporting", 9108), ("shard-controller", 8081)):
            assert admits(policies, pods[name], port, prometheus), name
            assert not any(admits(policies, pods[name], port, s) for s in (elsewhere, OUTSIDE, pods["gateway"])), name
        for name, port in (("gateway", 9200), ("manager", 8080)):
            assert admits(policies, pods[name], port, elsewhere) and admits(policies, pods[name], port, OUTSIDE)
        assert admits(policies, pods["nats"], 4222, pods["reporting"])
        assert not any(admits(policies, pods["nats"], 4222, s) for s in (prometheus, elsewhere, OUTSIDE))
        assert admits(policies, pods["nats"], 6222, pods["nats"])  # the servers' routes to each other
        assert not any(admits(policies, pods["nats"], 6222, s) for s in (pods["manager"], prometheus, OUTSIDE))
    finally:
        core.delete_namespace(monitoring)


async def test_every_rule_of_the_managers_cluster_role_is_needed(control_plane):
    rules = manager_role(kustomize_build("deploy/kubernetes"))["rules"]
    for index, removed in enumerate(rules):
        name = f"manager-without-{index}"
        kept = rules[:index] + rules[index + 1:]
        token = identity(control_plane, name, kept)
        await rbac_in_force(control_plane, name, kept[0])
        driver = make_driver(control_plane, token, FakeEngine())
        with pytest.raises(EngineUnavailable) as refused:
            await a_short_life(driver, f"c{uuid.uuid4().hex[:12]}")
        message = str(refused.value)
        assert "403" in message and "rbac.yaml" in message, (removed, message)
        assert any(resource in message for resource in removed["resources"]), (removed, message)


async def test_a_pull_secret_needs_the_component_that_names_it(control_plane, manager_token):
    core = client.CoreV1Api(control_plane.admin())
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="regcred"), type="kubernetes.io/dockerconfigjson",
                             data={".dockerconfigjson": "eyJhdXRocyI6e319"})
    core.create_namespaced_secret(PLATFORM, secret)

    base = make_driver(control_plane, manager_token, FakeEngine(), image_pull_secrets=["regcred"])
    cluster = record(f"c{uuid.uuid4().hex[:12]}")
    with pytest.raises(EngineUnavailable, match=r"may not read the image pull secret 'regcred'.*"
                                                r"components/image-pull-secrets"):
        await base.start(cluster, base.size_for(cluster.spec))

    air_gapped = manager_role(kustomize_build("deploy/kubernetes/overlays/air-gapped"))["rules"]
    token = identity(control_plane, "manager-air-gapped", air_gapped)
    await rbac_in_force(control_plane, "manager-air-gapped", air_gapped[-1])
    driver = make_driver(control_plane, token, FakeEngine(), image_pull_secrets=["regcred"])
    await driver.start(cluster, driver.size_for(cluster.spec))
    copied = core.read_namespaced_secret("regcred", f"ess-{cluster.id}")
    assert copied.type == "kubernetes.io/dockerconfigjson" and copied.data == secret.data


# with a bucket: the S3 keys Secret (a placeholder) and the keystore init container too
BACKUPS = {"snapshot_bucket": "snapshots", "snapshot_access_key": "AKIAEXAMPLE", "snapshot_secret_key": "example"}


@pytest.mark.parametrize("backups", [{}, BACKUPS], ids=["", "with-bucket"])
@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
async def test_what_render_prints_is_accepted_without_a_warning(control_plane, engine, backups):
    cluster = record(f"c{uuid.uuid4().hex[:12]}", engine=engine)
    objects = render_for_review(cluster, make_driver(control_plane, "unused", FakeEngine(), **backups)._settings)
    api = dynamic.DynamicClient(control_plane.admin())
    warnings = []
    for obj in objects:
        resource = api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        path = resource.path(name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"))
        request = api.client.param_serialize(
            "PATCH", path, query_params=[("fieldManager", "review"), ("force", "true")],
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            body=obj, auth_settings=["BearerToken"])
        response = await asyncio.to_thread(api.client.call_api, *request)
        assert response.status in (200, 201), response.read()
        warnings += [w for w in [response.headers.get("Warning")] if w]
    assert warnings == []
