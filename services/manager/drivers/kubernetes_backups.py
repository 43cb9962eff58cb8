"""The engine side of backups on Kubernetes, rendered from settings with no I/O: each engine
node's S3 client settings (`s3.client.default.*`), the Secret in the cluster's namespace that
holds the store's keys, and the init container that puts those keys into the engine's keystore.

Only for a cluster whose engines reach the bucket (`backups.engines_reach_the_bucket`: a bucket
is set and the engine has repository-s3, which the official OpenSearch image lacks and without
which its nodes refuse the settings and do not start); the keys only when both are set (without
them the engines' S3 client uses its default credentials, an instance or pod role). The key values appear in the
Secret's data and nowhere else: the init container reads them from its environment
(`secretKeyRef`) and pipes them to the keystore tool's `--stdin`.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from libs.common.models import ClusterRecord
from services.manager.backups import engines_reach_the_bucket
from services.manager.drivers.kubernetes_rules import FLAVOURS, EngineFlavour, Manifest, object_metadata
from services.manager.settings import KubernetesDriverSettings

S3_KEYS_SECRET = "engine-s3-keys"
CONFIG_VOLUME = "engine-config"
INIT_CONTAINER = "keystore"
KEYS_PLACEHOLDER = "<ESS_SNAPSHOT_ACCESS_KEY / ESS_SNAPSHOT_SECRET_KEY of the manager when applied>"
STAGING = "/mnt/engine-config"  # the init container's view of the config volume
# Secret key -> (the init container's variable, the engine's secure setting)
KEYSTORE_ENTRIES = {
    "access_key": ("S3_ACCESS_KEY", "s3.client.default.access_key"),
    "secret_key": ("S3_SECRET_KEY", "s3.client.default.secret_key"),
}


def s3_client_settings(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> dict[str, str]:
    """The engines' `default` S3 client: where the store is, how it is addressed and signed."""
    if not engines_reach_the_bucket(settings, cluster.spec.engine):
        return {}
    found = {"s3.client.default.region": settings.snapshot_region,
             "s3.client.default.path_style_access": str(settings.snapshot_path_style).lower()}
    if settings.snapshot_endpoint:
        url = urlsplit(settings.snapshot_endpoint if "://" in settings.snapshot_endpoint
                       else f"https://{settings.snapshot_endpoint}")
        # both engines take the host and the scheme apart
        found["s3.client.default.endpoint"] = url.netloc
        found["s3.client.default.protocol"] = url.scheme
    return found


def keys_in_keystore(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> bool:
    return bool(engines_reach_the_bucket(settings, cluster.spec.engine)
                and settings.snapshot_access_key and settings.snapshot_secret_key)


def render_s3_keys_secret(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> Manifest | None:
    """The store's keys, copied from the manager's settings into the cluster's namespace (pods
    read only their own namespace's Secrets); None when the engines get no keys."""
    if not keys_in_keystore(cluster, settings):
        return None
    values = {"access_key": settings.snapshot_access_key.get_secret_value(),
              "secret_key": settings.snapshot_secret_key.get_secret_value()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_metadata(S3_KEYS_SECRET, cluster, settings),
        "type": "Opaque",
        # data, not stringData: the live object holds data, so an unchanged Secret is not sent again
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }


def _keystore_script(flavour: EngineFlavour) -> str:
    """Copy the image's config dir to the shared volume and add the keys to a keystore there
    (made if the image has none); the engine's own entrypoint adds its entries to the same one."""
    lines = ["set -eu", f"cp -R {flavour.home}/config/. {STAGING}/"]  # -R: the files become the pod user's
    for variable, setting in KEYSTORE_ENTRIES.values():
        lines.append(f'printf %s "${variable}" | {flavour.home}/{flavour.keystore_tool} add -x -f {setting}')
    return "\n".join(lines)


def add_s3_client(pod_spec: Manifest, container: Manifest, cluster: ClusterRecord,
                  settings: KubernetesDriverSettings) -> None:
    """Give the engine container its S3 client settings and, with keys, the keystore holding them."""
    client = s3_client_settings(cluster, settings)
    if not client:
        return
    container["env"].extend({"name": name, "value": value} for name, value in client.items())
    if not keys_in_keystore(cluster, settings):
        return
    flavour = FLAVOURS[cluster.spec.engine]
    # the keystore lives in the config dir, which the engine writes to as well: the whole dir
    # moves to a volume (mounted first, before anything mounted inside it such as certs/)
    container["volumeMounts"].insert(0, {"name": CONFIG_VOLUME, "mountPath": f"{flavour.home}/config"})
    pod_spec.setdefault("volumes", []).append({"name": CONFIG_VOLUME, "emptyDir": {}})
    env = [{"name": flavour.path_conf_env, "value": STAGING}]
    env += [{"name": variable, "valueFrom": {"secretKeyRef": {"name": S3_KEYS_SECRET, "key": key}}}
            for key, (variable, _) in KEYSTORE_ENTRIES.items()]
    pod_spec["initContainers"] = [{
        "name": INIT_CONTAINER,
        "image": container["image"],
        "imagePullPolicy": container["imagePullPolicy"],
        "command": ["/bin/bash", "-c", _keystore_script(flavour)],
        "env": env,
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": STAGING}],
        "securityContext": dict(container["securityContext"]),
    }]
