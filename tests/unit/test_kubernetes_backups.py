"""The engine side of backups on Kubernetes, rendered without any API: each node's S3 client
settings, the Secret with the store's keys, the init container that puts them in the keystore,
and that the keys appear nowhere but in that Secret's data."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client

from services.manager.drivers import kubernetes_manifests as manifests
from services.manager.drivers.kubernetes_backups import KEYS_PLACEHOLDER, S3_KEYS_SECRET, render_s3_keys_secret
from tests.unit.test_kubernetes_manifests import by_kind, cluster, engine_container, env_of, settings

ACCESS, SECRET = "AKIAPLATFORMKEY00001", "s3cr3t/Platform+Key=="
HOMES = {"elasticsearch": "/usr/share/elasticsearch", "opensearch": "/usr/share/opensearch"}
TOOLS = {"elasticsearch": "bin/elasticsearch-keystore", "opensearch": "bin/opensearch-keystore"}
CONF_ENV = {"elasticsearch": "ES_PATH_CONF", "opensearch": "OPENSEARCH_PATH_CONF"}


def with_bucket(**overrides):
    return settings(**{"snapshot_bucket": "snapshots", "snapshot_endpoint": "http://minio.example:9000",
                       "snapshot_region": "eu-west-1", "snapshot_path_style": True,
                       "snapshot_access_key": ACCESS, "snapshot_secret_key": SECRET,
                       "opensearch_s3_plugin": True, **overrides})


def pod_spec(objects):
    return by_kind(objects, "StatefulSet")["spec"]["template"]["spec"]


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_each_node_gets_the_s3_client_settings_of_the_store(engine):
    container = engine_container(by_kind(manifests.render_cluster(cluster(engine), with_bucket()), "StatefulSet"))
    env = env_of(container)
    assert {k: v for k, v in env.items() if k.startswith("s3.")} == {
        "s3.client.default.endpoint": "minio.example:9000",
        "s3.client.default.protocol": "http",
        "s3.client.default.path_style_access": "true",
        "s3.client.default.region": "eu-west-1",
    }


def test_an_https_endpoint_without_path_style_is_rendered_so():
    container = engine_container(by_kind(manifests.render_cluster(
        cluster(), with_bucket(snapshot_endpoint="https://s3.eu-west-1.amazonaws.com", snapshot_path_style=False)),
        "StatefulSet"))
    env = env_of(container)
    assert env["s3.client.default.endpoint"] == "s3.eu-west-1.amazonaws.com"
    assert env["s3.client.default.protocol"] == "https"
    assert env["s3.client.default.path_style_access"] == "false"


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_an_init_container_adds_the_keys_to_the_engines_own_keystore_from_the_secret(engine):
    spec = pod_spec(manifests.render_cluster(cluster(engine), with_bucket()))
    engine_side = spec["containers"][0]
    [init] = spec["initContainers"]
    script = init["command"][-1]
    home = HOMES[engine]

    assert init["image"] == engine_side["image"]  # the engine's own keystore tool, of its version
    for setting in ("s3.client.default.access_key", "s3.client.default.secret_key"):
        assert f"{home}/{TOOLS[engine]} add -x -f {setting}" in script  # -x: the value from stdin
    assert env_of(init)["S3_ACCESS_KEY"] == {"secretKeyRef": {"name": S3_KEYS_SECRET, "key": "access_key"}}
    assert env_of(init)["S3_SECRET_KEY"] == {"secretKeyRef": {"name": S3_KEYS_SECRET, "key": "secret_key"}}
    # the tool writes where the engine reads: the config volume, the engine's config dir
    staging = env_of(init)[CONF_ENV[engine]]
    assert init["volumeMounts"] == [{"name": "engine-config", "mountPath": staging}]
    assert f"cp -R {home}/config/. {staging}/" in script
    mounts = [m["mountPath"] for m in engine_side["volumeMounts"]]
    assert {"name": "engine-config", "mountPath": f"{home}/config"} in engine_side["volumeMounts"]
    assert mounts.index(f"{home}/config") < min(
        (i for i, m in enumerate(mounts) if m.startswith(f"{home}/config/")), default=len(mounts))
    assert {"name": "engine-config", "emptyDir": {}} in spec["volumes"]
    # the restricted profile of the tenant namespace holds for it as for the engine
    assert init["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                       "runAsNonRoot": True}


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_the_keys_are_in_the_secrets_data_and_nowhere_else(engine):
    objects = manifests.render_cluster(cluster(engine), with_bucket())
    secret = render_s3_keys_secret(cluster(engine), with_bucket())
    assert secret["metadata"]["name"] == S3_KEYS_SECRET
    assert secret["metadata"]["namespace"] == "ess-c0a1b2c3d4e5f"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "access_key": ACCESS, "secret_key": SECRET}
    rendered = json.dumps(objects)
    encoded = [base64.b64encode(v.encode()).decode() for v in (ACCESS, SECRET)]
    for value in (ACCESS, SECRET, *encoded):
        assert value not in rendered


def test_render_for_review_shows_a_placeholder_for_the_keys():
    objects = manifests.render_for_review(cluster(), with_bucket())
    assert by_kind(objects, "Secret", S3_KEYS_SECRET)["stringData"] == {
        "access_key": KEYS_PLACEHOLDER, "secret_key": KEYS_PLACEHOLDER}
    printed = json.dumps(objects)
    assert ACCESS not in printed and SECRET not in printed


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_without_a_bucket_nothing_of_s3_is_rendered(engine):
    plain = manifests.render_for_review(cluster(engine), settings())
    assert "s3.client" not in json.dumps(plain) and "initContainers" not in json.dumps(plain)
    assert all(o["metadata"]["name"] != S3_KEYS_SECRET for o in plain)
    # keys alone change nothing: the objects are those of a platform without backups
    keys_only = settings(snapshot_access_key=ACCESS, snapshot_secret_key=SECRET)
    assert manifests.render_cluster(cluster(engine), keys_only) == manifests.render_cluster(cluster(engine), settings())


def test_an_opensearch_image_without_the_s3_plugin_gets_nothing_of_s3():
    # its nodes would refuse s3.client.* (unknown setting) and never start
    without = with_bucket(opensearch_s3_plugin=False)
    objects = manifests.render_for_review(cluster("opensearch"), without)
    assert "s3.client" not in json.dumps(objects) and "initContainers" not in json.dumps(objects)
    assert all(o["metadata"]["name"] != S3_KEYS_SECRET for o in objects)
    assert render_s3_keys_secret(cluster("opensearch"), without) is None
    assert manifests.render_cluster(cluster("opensearch"), without) == manifests.render_cluster(
        cluster("opensearch"), settings())


@pytest.mark.parametrize("plugin", [False, True])
def test_elasticsearch_gets_all_of_s3_whatever_the_opensearch_flag(plugin):
    spec = pod_spec(manifests.render_cluster(cluster("elasticsearch"), with_bucket(opensearch_s3_plugin=plugin)))
    assert "s3.client.default.region" in env_of(spec["containers"][0])
    assert [init["name"] for init in spec["initContainers"]] == ["keystore"]
    assert render_s3_keys_secret(cluster("elasticsearch"), with_bucket(opensearch_s3_plugin=plugin)) is not None


def test_an_opensearch_image_with_the_s3_plugin_gets_all_of_s3():
    objects = manifests.render_for_review(cluster("opensearch"), with_bucket())
    spec = pod_spec(objects)
    assert "s3.client.default.endpoint" in env_of(spec["containers"][0])
    assert [init["name"] for init in spec["initContainers"]] == ["keystore"]
    assert any(o["metadata"]["name"] == S3_KEYS_SECRET for o in objects)


def test_a_bucket_without_keys_leaves_the_engines_to_their_default_credentials():
    objects = manifests.render_for_review(cluster(), settings(snapshot_bucket="snapshots"))
    spec = pod_spec(objects)
    assert "s3.client.default.region" in env_of(spec["containers"][0])
    assert "initContainers" not in spec
    assert all(o["metadata"]["name"] != S3_KEYS_SECRET for o in objects)


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_the_objects_with_a_bucket_round_trip_through_the_clients_openapi_models(engine):
    api = client.ApiClient()
    objects = manifests.render_cluster(cluster(engine, replicas=3), with_bucket())
    objects.append(render_s3_keys_secret(cluster(engine), with_bucket()))
    for obj in objects:
        model = api.deserialize(json.dumps(obj), f"V1{obj['kind']}", "application/json")
        assert api.sanitize_for_serialization(model) == obj, f"{obj['kind']} {obj['metadata']['name']}"
