"""The kubernetes driver against a real API server (etcd, kube-apiserver with RBAC, controller
manager, scheduler; kwok plays the kubelets), acting as the manager's ServiceAccount with the
ClusterRole of deploy/kubernetes.

What a real server enforces is what is pinned here: server-side apply and field ownership,
validation, admission (ResourceQuota), RBAC, controllers (StatefulSet pods, claims bound by a
provisioner, namespace deletion). No engine runs: a fake answers the few calls the manager
makes of one, and can stop answering.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from libs.common.models import ClusterStatus
from services.manager.drivers import ResizeInProgress
from services.manager.drivers.kubernetes_manifests import render_namespace
from services.manager.drivers.kubernetes_rules import ENGINE_CLIENTS, pod_labels
from services.manager.provisioner import Provisioner
from tests.kube_testing import (
    Admin,
    RecordsInMemory,
    make_driver,
    publish_nowhere,
    ready_observation,
    reconcile_until,
    record,
    requests_of,
    until,
)
from tests.network_policies import OUTSIDE, Pod, admits

EVERY_OBJECT = {
    ("Namespace", None), ("Secret", "engine-credentials"), ("Secret", "engine-transport-tls"),
    ("ResourceQuota", "engine"), ("LimitRange", "engine"), ("NetworkPolicy", "engine"),
    ("Service", "engine-nodes"), ("Service", "engine"), ("PodDisruptionBudget", "engine"),
    ("StatefulSet", "engine"),
}


# -- create, re-apply, field ownership ------------------------------------------------------
async def test_every_object_is_accepted_and_applied_by_es_serverless(driver, admin, cluster_id):
    cluster = record(cluster_id)
    endpoint = await driver.start(cluster, driver.size_for(cluster.spec))

    namespace = f"ess-{cluster_id}"
    assert endpoint == f"http://engine.{namespace}.svc.cluster.local:9200"
    api = client.ApiClient()
    found = set()
    for kind, name in EVERY_OBJECT:
        reader = {"Namespace": lambda n: admin.core.read_namespace(namespace),
                  "Secret": lambda n: admin.core.read_namespaced_secret(n, namespace),
                  "ResourceQuota": lambda n: admin.core.read_namespaced_resource_quota(n, namespace),
                  "LimitRange": lambda n: admin.core.read_namespaced_limit_range(n, namespace),
                  "Service": lambda n: admin.core.read_namespaced_service(n, namespace),
                  "NetworkPolicy": lambda n: client.NetworkingV1Api(admin.core.api_client)
                  .read_namespaced_network_policy(n, namespace),
                  "PodDisruptionBudget": lambda n: client.PolicyV1Api(admin.core.api_client)
                  .read_namespaced_pod_disruption_budget(n, namespace),
                  "StatefulSet": lambda n: admin.apps.read_namespaced_stateful_set(n, namespace)}[kind]
        live = api.sanitize_for_serialization(reader(name))
        managers = {(f["manager"], f["operation"]) for f in live["metadata"]["managedFields"]}
        assert ("es-serverless", "Apply") in managers, (kind, name, managers)
        found.add((kind, name))
    assert found == EVERY_OBJECT
    credentials = admin.core.read_namespaced_secret("engine-credentials", namespace).data
    assert base64.b64decode(credentials["username"]).decode() == "elastic"
    assert admin.core.read_namespaced_service("engine", namespace).spec.cluster_ip  # allocated by the server


async def test_the_network_policy_held_lets_in_only_the_platforms_engine_clients_and_the_nodes(
        driver, admin, control_plane, cluster_id):
    cluster = record(cluster_id)
    await driver.start(cluster, driver.size_for(cluster.spec))
    await ready_observation(driver, cluster_id, 1)
    namespace, platform = f"ess-{cluster_id}", "es-serverless"
    api, networking = client.ApiClient(), client.NetworkingV1Api(admin.core.api_client)
    # list items come without their kind
    policies = [{**api.sanitize_for_serialization(p), "kind": "NetworkPolicy"}
                for p in networking.list_namespaced_network_policy(namespace).items]
    assert [p["metadata"]["name"] for p in policies] == ["engine"]
    platform_rule, nodes_rule = policies[0]["spec"]["ingress"]
    assert platform_rule == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": platform}},
                  "podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                                        "values": list(ENGINE_CLIENTS)}]}}],
        "ports": [{"protocol": "TCP", "port": 9200}]}
    assert nodes_rule == {"from": [{"podSelector": {"matchLabels": {
        "es-serverless.io/cluster": cluster_id, "app.kubernetes.io/component": "engine"}}}]}

    def as_pod(live) -> Pod:
        ns = admin.core.read_namespace(live.metadata.namespace).metadata.labels
        return Pod(live.metadata.namespace, live.metadata.labels or {}, ns)

    def platform_pods():
        found = {p.metadata.labels.get("app.kubernetes.io/name"): as_pod(p)
                 for p in admin.core.list_namespaced_pod(platform).items}
        return found if set(found) >= {*ENGINE_CLIENTS, "nats"} else None

    node = as_pod(admin.core.read_namespaced_pod("engine-0", namespace))
    pods = await until(platform_pods, "a pod of every platform service")
    for name in ENGINE_CLIENTS:
        assert admits(policies, node, 9200, pods[name]), name
        assert not admits(policies, node, 9300, pods[name]), name
    assert admits(policies, node, 9300, node)

    # another tenant's namespace, as the server labels it
    other = record(f"c{cluster_id[1:][::-1]}").model_copy(update={"tenant_org_id": "globex"})
    control_plane.apply([render_namespace(other, driver._settings)])
    try:
        other_labels = admin.core.read_namespace(f"ess-{other.id}").metadata.labels
        kept_out = {
            "another tenant's engine": Pod(f"ess-{other.id}", pod_labels(other), other_labels),
            "a pod elsewhere with this cluster's node labels": Pod(f"ess-{other.id}", node.labels, other_labels),
            "NATS, of the platform namespace": pods["nats"],
            "an unlabelled pod of the platform namespace": Pod(platform, {}, pods["nats"].namespace_labels),
            "a client outside the cluster": OUTSIDE,
        }
        for what, source in kept_out.items():
            assert not any(admits(policies, node, port, source) for port in (9200, 9300)), what
    finally:
        admin.core.delete_namespace(f"ess-{other.id}")


async def test_reapplying_an_unchanged_spec_writes_nothing(driver, admin, cluster_id, engine):
    cluster = record(cluster_id)
    await driver.start(cluster, driver.size_for(cluster.spec))
    await ready_observation(driver, cluster_id, 1)
    sent = requests_of(driver)

    await driver.start(cluster, driver.size_for(cluster.spec))
    await driver.resize(cluster, driver.size_for(cluster.spec), driver.size_for(cluster.spec))
    await driver.observe(cluster_id)

    assert sent and {method for method, _ in sent} == {"GET"}
    assert admin.statefulset(f"ess-{cluster_id}").metadata.generation == 1


async def test_a_field_taken_by_another_manager_is_taken_back(driver, admin, control_plane, cluster_id):
    cluster = record(cluster_id, replicas=2)
    await driver.start(cluster, driver.size_for(cluster.spec))
    namespace = f"ess-{cluster_id}"
    patch = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "engine", "namespace": namespace},
             "spec": {"replicas": 5}}
    apps = client.AppsV1Api(control_plane.admin())

    with pytest.raises(ApiException) as conflict:  # without force a real server refuses the other manager
        apps.patch_namespaced_stateful_set("engine", namespace, patch, field_manager="someone-else",
                                           _content_type="application/apply-patch+yaml")
    assert conflict.value.status == 409 and "es-serverless" in conflict.value.body
    apps.patch_namespaced_stateful_set("engine", namespace, patch, field_manager="someone-else", force=True,
                                       _content_type="application/apply-patch+yaml")
    assert admin.statefulset(namespace).spec.replicas == 5

    await driver.start(cluster, driver.size_for(cluster.spec))
    live = admin.statefulset(namespace)
    assert live.spec.replicas == 2
    owners = {f.manager for f in live.metadata.managed_fields if "f:replicas" in (f.fields_v1 or {}).get("f:spec", {})}
    assert owners == {"es-serverless"}


async def test_a_spec_the_server_refuses_fails_the_cluster_with_the_servers_reason(
        control_plane, manager_token, engine, cluster_id):
    # a label value with a space, in the NetworkPolicy that lets the platform's namespace in
    bad = make_driver(control_plane, manager_token, engine, kube_platform_namespace="es serverless")
    cluster = record(cluster_id)
    store = RecordsInMemory(cluster)
    provisioner = Provisioner(bad._settings, store, bad, publish_nowhere, leases=None)

    await provisioner.reconcile(cluster.id)

    failed = store.records[cluster.id]
    assert failed.status == ClusterStatus.FAILED
    assert "422" in failed.status_reason and "es serverless" in failed.status_reason
    assert "namespaceSelector" in failed.status_reason


async def test_pods_made_ready_by_kwok_and_an_answering_engine_make_the_cluster_ready(
        driver, admin, cluster_id):
    cluster = record(cluster_id)
    store = RecordsInMemory(cluster)
    provisioner = Provisioner(driver._settings, store, driver, publish_nowhere, leases=None)

    ready = await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.READY,
                                  "the cluster ready")

    assert (ready.health, ready.nodes) == ("green", 1)
    assert ready.endpoint == f"http://engine.ess-{cluster_id}.svc.cluster.local:9200"
    secret = admin.core.read_namespaced_secret("engine-credentials", f"ess-{cluster_id}").data
    assert ready.credentials.password == base64.b64decode(secret["password"]).decode()
    pods = admin.core.list_namespaced_pod(f"ess-{cluster_id}").items
    assert [p.spec.node_name.startswith("kwok-node-") for p in pods] == [True]
    claim = admin.core.read_namespaced_persistent_volume_claim("data-engine-0", f"ess-{cluster_id}")
    assert claim.status.phase == "Bound"


async def test_an_engine_that_never_answers_is_not_ready_and_fails_with_the_reason(
        control_plane, manager_token, engine, cluster_id):
    engine.reachable = False  # the manager cannot resolve cluster DNS names, pods are Ready all the same
    driver = make_driver(control_plane, manager_token, engine, provision_timeout_s=4.0)
    cluster = record(cluster_id)
    store = RecordsInMemory(cluster)
    provisioner = Provisioner(driver._settings, store, driver, publish_nowhere, leases=None)

    waiting = await reconcile_until(provisioner, store, cluster_id, lambda r: "does not answer" in r.status_reason,
                                    "the reason to say the engine does not answer")
    assert waiting.status == ClusterStatus.PROVISIONING and waiting.health is None
    assert "1 pod(s) ready" in waiting.status_reason and "ESS_KUBE_ENGINES_REACHABLE" in waiting.status_reason

    failed = await reconcile_until(provisioner, store, cluster_id, lambda r: r.status != ClusterStatus.PROVISIONING,
                                   "the cluster to leave provisioning")
    assert failed.status == ClusterStatus.FAILED and failed.health is None
    assert "Name or service not known" in failed.status_reason


async def test_where_the_manager_cannot_reach_engines_ready_rests_on_the_pods_and_says_so(
        control_plane, manager_token, engine, cluster_id):
    engine.reachable = False
    driver = make_driver(control_plane, manager_token, engine, kube_engines_reachable=False)
    cluster = record(cluster_id)
    store = RecordsInMemory(cluster)
    provisioner = Provisioner(driver._settings, store, driver, publish_nowhere, leases=None)

    ready = await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.READY,
                                  "the cluster ready")
    assert ready.health is None, "no colour the engine did not give"
    assert "readiness probes" in ready.status_reason and "health unknown" in ready.status_reason


async def test_scaling_1_3_2_drains_the_leaving_node_first(driver, admin, engine, cluster_id):
    one, three, two = record(cluster_id, 1), record(cluster_id, 3), record(cluster_id, 2)
    namespace = f"ess-{cluster_id}"
    await driver.start(one, driver.size_for(one.spec))
    await ready_observation(driver, cluster_id, 1)

    await driver.resize(three, driver.size_for(one.spec), driver.size_for(three.spec))
    await ready_observation(driver, cluster_id, 3)
    quota = admin.core.read_namespaced_resource_quota("engine", namespace)
    assert quota.spec.hard["pods"] == "3" and quota.status.used["pods"] == "3"

    engine.shards_left = 4
    with pytest.raises(ResizeInProgress, match="draining engine-2: 4 shard copies still to move"):
        await driver.resize(two, driver.size_for(three.spec), driver.size_for(two.spec))
    assert engine.excluded[-1] == ["engine-2"] and admin.statefulset(namespace).spec.replicas == 3

    engine.shards_left = 0
    await driver.resize(two, driver.size_for(three.spec), driver.size_for(two.spec))
    assert admin.statefulset(namespace).spec.replicas == 2
    lifted = engine.lifted
    observed = await ready_observation(driver, cluster_id, 2)
    assert observed.size.nodes == 2
    assert engine.lifted == lifted + 1, "once the drained pod is gone its exclusions are lifted"
    await until(lambda: [p.metadata.name for p in admin.core.list_namespaced_pod(namespace).items]
                == ["engine-0", "engine-1"], "engine-2 gone")
    assert admin.core.read_namespaced_resource_quota("engine", namespace).spec.hard["pods"] == "2"


async def test_a_drain_that_cannot_progress_is_given_up_with_the_cluster_at_its_old_size(
        control_plane, manager_token, engine, admin, cluster_id):
    driver = make_driver(control_plane, manager_token, engine, kube_drain_timeout_s=3.0)
    three = record(cluster_id, 3)
    store = RecordsInMemory(three)
    provisioner = Provisioner(driver._settings, store, driver, publish_nowhere, leases=None)
    await reconcile_until(provisioner, store, cluster_id, lambda r: r.status == ClusterStatus.READY, "ready at 3")

    # PATCH {"replicas": 2}, as the API records it; then the engine stops answering the manager
    store.records[cluster_id].spec.replicas = 2
    store.records[cluster_id].generation += 1
    store.records[cluster_id].status = ClusterStatus.SCALING
    engine.reachable = False

    draining = await reconcile_until(provisioner, store, cluster_id, lambda r: "draining" in r.status_reason,
                                     "a drain under way")
    assert draining.status == ClusterStatus.SCALING and "does not answer" in draining.status_reason
    given_up = await reconcile_until(provisioner, store, cluster_id, lambda r: r.status != ClusterStatus.SCALING,
                                     "the scale-in to end")

    assert given_up.status == ClusterStatus.READY
    assert (given_up.spec.replicas, given_up.nodes) == (3, 3)
    assert given_up.status_reason.startswith("change of nodes given up: 2 node(s) asked, 3 kept")
    assert "engine-2" in given_up.status_reason and "Name or service not known" in given_up.status_reason
    assert admin.statefulset(f"ess-{cluster_id}").spec.replicas == 3

    engine.reachable = True
    for _ in range(3):  # the next passes leave it be, and keep saying why
        await provisioner.reconcile(cluster_id)
    assert store.records[cluster_id].status_reason == given_up.status_reason
    assert admin.statefulset(f"ess-{cluster_id}").spec.replicas == 3


# -- admission, volumes, delete ---------------------------------------------------------------
async def test_the_resource_quota_is_enforced_by_admission(driver, control_plane, cluster_id):
    cluster = record(cluster_id)
    await driver.start(cluster, driver.size_for(cluster.spec))
    await ready_observation(driver, cluster_id, 1)
    # small, and within the namespace's restricted pod security: only the quota stands in its way
    extra = client.V1Pod(metadata=client.V1ObjectMeta(name="extra"), spec=client.V1PodSpec(
        security_context=client.V1PodSecurityContext(run_as_non_root=True, run_as_user=1000,
                                                     seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault")),
        containers=[client.V1Container(
            name="c", image="busybox", resources=client.V1ResourceRequirements(limits={"cpu": "100m", "memory": "64Mi"}),
            security_context=client.V1SecurityContext(allow_privilege_escalation=False,
                                                      capabilities=client.V1Capabilities(drop=["ALL"])))]))

    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(control_plane.admin()).create_namespaced_pod(f"ess-{cluster_id}", extra)
    assert refused.value.status == 403 and "exceeded quota" in refused.value.body


async def test_a_claim_pending_for_want_of_a_default_storage_class_is_the_reason(
        control_plane, driver, cluster_id):
    control_plane.set_default_storage_class(False)
    try:
        cluster = record(cluster_id)
        store = RecordsInMemory(cluster)
        provisioner = Provisioner(driver._settings, store, driver, publish_nowhere, leases=None)
        waiting = await reconcile_until(provisioner, store, cluster_id, lambda r: "StorageClass" in r.status_reason,
                                        "the reason to name the StorageClass")
    finally:
        control_plane.set_default_storage_class(True)
    assert waiting.status == ClusterStatus.PROVISIONING
    assert "data-engine-0 is Pending" in waiting.status_reason and "no default StorageClass" in waiting.status_reason
    assert "ESS_STORAGE_CLASS" in waiting.status_reason


async def test_delete_waits_until_the_namespace_is_gone(driver, admin, cluster_id):
    cluster = record(cluster_id, replicas=2)
    await driver.start(cluster, driver.size_for(cluster.spec))
    await ready_observation(driver, cluster_id, 2)
    namespace = f"ess-{cluster_id}"
    assert cluster_id in await driver.orphans(set())

    removal = asyncio.create_task(driver.remove(cluster_id))
    seen_terminating = False
    while not removal.done():
        seen_terminating |= admin.terminating(namespace)
        await asyncio.sleep(0.1)
    await removal

    assert seen_terminating, "remove returned before the namespace had even begun to go"
    assert not admin.namespace_exists(namespace)
    assert not (await driver.observe(cluster_id)).running
    await driver.remove(cluster_id)  # gone already: nothing to do


async def test_orphans_are_never_anyone_elses_namespaces(driver, control_plane, cluster_id):
    control_plane.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": f"ess-{cluster_id}", "labels": {"es-serverless.io/cluster": cluster_id}}}])
    assert cluster_id not in await driver.orphans(set())
    await driver.remove(cluster_id)
    assert Admin(control_plane).namespace_exists(f"ess-{cluster_id}"), "not ours: never deleted"
