"""The platform end to end with ESS_DRIVER=kubernetes: a manager process of its own (with its
own NATS, so the local-driver manager of the other tests never sees these clusters) talks to
the real API server through a kubeconfig holding its ServiceAccount's token.

It runs outside the cluster, as a manager in compose would: engine Service names do not
resolve here, so it is told so (ESS_KUBE_ENGINES_REACHABLE=false) and `ready` rests on the
pods' readiness, which kwok grants.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from kubernetes import client

from devrun.nats_server import NatsServer
from devrun.supervisor import free_port
from devrun.supervisor import ServiceProcess
from tests.kube_cluster import ControlPlane

OPERATOR_KEY = f"op-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def kube_api(control_plane: ControlPlane, manager_token: str, tmp_path_factory) -> httpx.Client:
    state = tmp_path_factory.mktemp("kube-platform")
    kubeconfig = control_plane.write_kubeconfig(state / "manager.kubeconfig", manager_token)
    env = {
        "ESS_NATS_URL": f"nats://127.0.0.1:{free_port()}", "ESS_API_PORT": str(free_port()),
        "ESS_STATE_DIR": str(state), "ESS_OPERATOR_KEY": OPERATOR_KEY, "ESS_DRIVER": "kubernetes",
        "ESS_KUBE_CONFIG": str(kubeconfig), "ESS_KUBE_ENGINES_REACHABLE": "false",
        # its own prefix: the other tests' namespaces are no orphans of this manager
        "ESS_KUBE_NAMESPACE_PREFIX": "e2e-",
        "ESS_RECONCILE_INTERVAL_S": "1", "ESS_LOG_LEVEL": "INFO",
        # a bucket, on a store nobody listens at, with the official OpenSearch image (no S3 plugin):
        # OpenSearch clusters have no backups; no retention, so deletes take no final snapshot
        "ESS_SNAPSHOT_BUCKET": "snapshots", "ESS_SNAPSHOT_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "ESS_DELETED_RETENTION_S": "0",
    }
    nats = NatsServer(env["ESS_NATS_URL"], state / "nats", state / "logs" / "nats.log")
    nats.start()
    manager = ServiceProcess("services.manager", env, int(env["ESS_API_PORT"]), state / "logs")
    try:
        manager.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{env['ESS_API_PORT']}", timeout=30,
                          headers={"Authorization": f"ApiKey {OPERATOR_KEY}"}) as api:
            yield api
    finally:
        manager.stop()
        nats.stop()


def wait_for(api: httpx.Client, cluster_id: str, done, what: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = api.get(f"/clusters/{cluster_id}")
        body = answer.json() if answer.status_code == 200 else {"status_code": answer.status_code}
        if done(body):
            return body
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}; last: {body}"
        time.sleep(0.3)


def test_post_patch_delete_through_the_api_on_kubernetes(kube_api, control_plane):
    body = {"tenant_org_id": f"t{uuid.uuid4().hex[:8]}", "user": "alice", "service_name": "search",
            "replicas": 1, "cpu": "500m", "memory": "1Gi", "storage": "5Gi"}
    created = kube_api.post("/clusters", json=body)
    assert created.status_code == 202, created.text
    cluster_id = created.json()["id"]
    namespace = f"e2e-{cluster_id}"

    ready = wait_for(kube_api, cluster_id, lambda c: c.get("status") == "ready", "ready")
    assert ready["nodes"] == 1 and ready["health"] is None
    assert "readiness probes" in ready["status_reason"]
    # tenants dial the gateway; the engine's own Service is the operator's to see
    assert ready["engine_endpoint"] == f"http://engine.{namespace}.svc.cluster.local:9200"
    assert ready["endpoint"].endswith(f"/{cluster_id}")
    assert ready["credentials"]["username"] == "elastic"
    apps, core = client.AppsV1Api(control_plane.admin()), client.CoreV1Api(control_plane.admin())
    labels = core.read_namespace(namespace).metadata.labels
    assert labels["es-serverless.io/tenant"] == body["tenant_org_id"]
    assert apps.read_namespaced_stateful_set("engine", namespace).status.ready_replicas == 1

    assert kube_api.patch(f"/clusters/{cluster_id}", json={"replicas": 2}).status_code == 202
    scaled = wait_for(kube_api, cluster_id, lambda c: c.get("status") == "ready" and c.get("nodes") == 2,
                      "ready with 2 nodes")
    assert scaled["replicas"] == 2
    assert apps.read_namespaced_stateful_set("engine", namespace).spec.replicas == 2

    assert kube_api.delete(f"/clusters/{cluster_id}").status_code == 202
    wait_for(kube_api, cluster_id, lambda c: c.get("status_code") == 404, "the cluster gone")
    assert namespace not in {n.metadata.name for n in core.list_namespace().items}


def test_an_opensearch_cluster_without_the_s3_plugin_answers_409_naming_the_setting(kube_api):
    body = {"tenant_org_id": f"t{uuid.uuid4().hex[:8]}", "user": "alice", "service_name": "search",
            "engine": "opensearch", "replicas": 1, "cpu": "500m", "memory": "1Gi", "storage": "5Gi"}
    created = kube_api.post("/clusters", json=body)
    assert created.status_code == 202, created.text
    cluster_id = created.json()["id"]
    assert created.json()["snapshot_policy"]["every_s"] == 0  # no schedule: no snapshot-age alert

    refused = kube_api.post(f"/clusters/{cluster_id}/snapshots")
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["error"] == "backups_off" and "ESS_OPENSEARCH_S3_PLUGIN=true" in problem["message"]
    assert problem["fields"][0]["field"] == "ESS_OPENSEARCH_S3_PLUGIN"
    schedule = kube_api.patch(f"/clusters/{cluster_id}", json={"snapshot_policy": {"every_s": 600}})
    assert schedule.status_code == 409 and schedule.json()["error"] == "backups_off"

    assert kube_api.delete(f"/clusters/{cluster_id}").status_code == 202
    wait_for(kube_api, cluster_id, lambda c: c.get("status_code") == 404, "the cluster gone")
