"""Platform settings in sections, read from the environment with the `ESS_` prefix.

This module owns every setting's name, default and validation, each declared once, in the
section of the part of the platform that reads it. A service's settings class is composed of
the sections it reads (`services/<service>/settings.py`; devrun/ and the tests compose
their own), so attribute access stays flat (`settings.nats_url`) and the variable names stay
`ESS_<FIELD>` whatever section a field is in. Code that reads one section takes that section
(a driver its driver's, `build_broker` NATS's); code that reads several takes its service's
class; no module in libs/common reads two sections (`libs/common/service.py` takes NATS's
and the bind host's in separate functions), so none needs a Protocol over several. `SECTIONS`
lists them all (a unit test checks no field is declared twice, that each service reads only its
sections, and that the README's table names exactly these variables).

Defaults serve the local run on one machine; every address can be overridden.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from libs.common import subjects

ENGINE_VERSION = "2.19.1"  # must match deploy/engine/pom.xml (a test checks it)
# the local driver's second OpenSearch: on Java 21+, with the JDK's AOT cache (deploy/engine/opensearch-3/pom.xml)
OPENSEARCH3_VERSION = "3.5.0"
ELASTICSEARCH_VERSION = "8.15.3"  # the kubernetes driver's image; deploy/engine/elasticsearch/pom.xml locally
# the local driver's second Elasticsearch, the last 8.x line (deploy/engine/elasticsearch-8.19/pom.xml)
ELASTICSEARCH819_VERSION = "8.19.21"


class Section(BaseSettings):
    """A group of settings; fields are `ESS_<FIELD>` variables, unknown variables are ignored."""

    model_config = SettingsConfigDict(env_prefix="ESS_", extra="ignore")


class NatsSection(Section):
    """Every service: the spine and the store."""

    # NATS: the spine and the store. A cluster's servers as a comma list: a service fails over
    # between them without a restart
    nats_url: str = "nats://127.0.0.1:4222"
    nats_connect_timeout_s: float = 2.0
    # one JetStream request (a KV read or write, a publish's ack) waits this long: through a
    # stream leader's election when a server of a cluster dies (a few seconds), not beyond
    nats_timeout_s: float = Field(default=10.0, gt=0)
    # copies JetStream keeps of every stream and KV bucket: 1 on one server, 3 on a cluster of three
    nats_replicas: int = Field(default=1, ge=1, le=5)

    @property
    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


class BindSection(Section):
    """The manager, the shard controller and reporting: the host their HTTP servers bind."""

    api_host: str = "127.0.0.1"  # named for the manager's REST API, which came first


class ApiSection(Section):
    """The manager: its REST API and its limits per key."""

    # manager REST API
    api_port: int = 8080
    rate_limit_per_minute: int = Field(default=120, gt=0)  # mutating calls per key
    rate_limit_burst: int = Field(default=30, gt=0)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    idempotency_ttl_s: float = 24 * 3600  # how long an Idempotency-Key's answer is kept


class AccessSection(Section):
    """The manager and the gateway: the key both accept for every tenant."""

    # access: the operator key sees every tenant; tenants use keys made through the API
    operator_key: SecretStr | None = None  # `make up` makes one and keeps it in the state dir


class LoggingSection(Section):
    """Every service."""

    # logging: "console" (key=value, for a terminal) or "json" (for containers)
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"


class GatewaySection(Section):
    """The gateway; the manager reads its public address (endpoints) and activity period."""

    # gateway: the data plane tenants' clients talk to, at <gateway_url>/<cluster id>
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 9200
    gateway_metrics_port: int = 9201  # /metrics names every tenant: a port of its own, for monitoring only
    gateway_url: str | None = None  # what clients dial, behind a proxy; None: http://host:port
    gateway_instance_id: str | None = None  # names its activity reports; None: host:port
    activity_flush_s: float = Field(default=5.0, gt=0)  # how often each gateway reports activity
    key_cache_s: float = Field(default=5.0, ge=0)  # a revoked key still works this long at a gateway
    upstream_timeout_s: float = Field(default=120.0, gt=0)  # one request to an engine, end to end
    # refused keys: an address past this many in a minute gets 429 until the minute is over
    auth_failures_per_minute: int = Field(default=60, ge=1)
    key_lookups_per_s: float = Field(default=200.0, gt=0)  # KV reads for keys not known good, all addresses
    # the byte pump (services/gateway/pump, Go): carries requests already decided; false: Python carries all
    gateway_pump: bool = True
    gateway_pump_bin: Path | None = None  # None: the one `make setup` built under ~/.cache/es-serverless/pump
    gateway_internal_port: int = 0  # where the Python gateway answers the pump, on loopback; 0: a free port
    pump_report_s: float = Field(default=1.0, gt=0)  # how often the pump tells the gateway what it carried
    # pumps sharing the tenants' port (SO_REUSEPORT), one core each; None: the cores this process
    # is given less one, which the Python gateway decides on (on 2 cores one pump carried more than two)
    gateway_workers: int | None = Field(default=None, ge=1)

    @property
    def pump_workers(self) -> int:
        return self.gateway_workers or max(1, cores_given() - 1)

    @property
    def public_gateway_url(self) -> str:
        return (self.gateway_url or f"http://{self.gateway_host}:{self.gateway_port}").rstrip("/")


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def cores_given(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, lowered by a cgroup v2 quota (a container's limit)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


class ServerlessSection(Section):
    """The manager (hibernation) and the gateway (holding requests while a cluster wakes)."""

    # serverless: hibernation of idle clusters and waking on the next request
    hibernate_after_s: int = Field(default=600, ge=0)  # a new cluster's default; 0: never
    hibernate_grace_s: float = Field(default=1.0, ge=0)  # in-flight requests finish before the stop
    wake_timeout_s: float = Field(default=60.0, gt=0)  # a held request gets 503 after this
    # ... counted from its cluster's engine start when the start waited its turn on a busy
    # machine (the local driver's ESS_LOCAL_CONCURRENT_STARTS), but never longer than this in all
    wake_queued_max_s: float = Field(default=180.0, gt=0)

    @property
    def hold_max_s(self) -> float:
        """The longest a request is held for a wake: a gateway stopping drains this long."""
        return max(self.wake_timeout_s, self.wake_queued_max_s)


class BackupsSection(Section):
    """The manager: snapshots, their schedule and the retention of deleted clusters."""

    # backups: engine snapshots in a repository per cluster (local: `fs` under the state dir;
    # kubernetes: S3, MinIO in compose), on each cluster's `snapshot_policy`
    snapshot_every_s: int = Field(default=3600, ge=0)  # a new cluster's default period; 0: no schedule
    snapshot_keep: int = Field(default=24, ge=1)  # scheduled snapshots kept per cluster
    deleted_retention_s: float = Field(default=7 * 24 * 3600, ge=0)  # a deleted cluster's final snapshot
    snapshot_timeout_s: float = Field(default=600.0, gt=0)  # a snapshot or restore running longer failed
    # kubernetes: the S3 bucket, a prefix per cluster; "" turns backups off there. The manager
    # makes it at start-up and gives each engine the S3 client settings and keys below
    snapshot_bucket: str = ""
    snapshot_endpoint: str = "http://minio.es-serverless:9000"  # kubernetes: the S3 endpoint engines and manager dial
    snapshot_region: str = "us-east-1"
    snapshot_path_style: bool = True  # MinIO and most S3-compatible stores want path-style access
    # the store's keys: the manager's own S3 calls, and each engine's keystore (through a Secret
    # in the cluster's namespace); None: the default credential chain (an instance role) for both
    snapshot_access_key: SecretStr | None = None
    snapshot_secret_key: SecretStr | None = None
    snapshot_store_timeout_s: float = Field(default=10.0, gt=0)  # one call of the manager to the store
    # the platform's own state (KV buckets, usage and audit streams) backed up to the same store:
    # locally under <state>/control-plane-backups, on Kubernetes in the bucket under control-plane/
    control_backup_every_s: int = Field(default=3600, ge=0)  # 0: on demand only
    control_backup_keep: int = Field(default=48, ge=1)


class ProvisionerSection(Section):
    """The manager: which driver, how often it reconciles, and its name as a lease holder."""

    # provisioning
    driver: Literal["local", "kubernetes"] = "local"
    reconcile_interval_s: float = Field(default=2.0, gt=0)
    # while an engine settles: looked at this often (a refused connection costs nothing)
    ready_poll_interval_s: float = Field(default=0.05, gt=0)
    provision_timeout_s: float = Field(default=180.0, gt=0)
    # for requests that name no engine, where the driver runs it; None: the driver's first
    # (kubernetes: elasticsearch; local: opensearch, though it runs elasticsearch too)
    default_engine: Literal["opensearch", "elasticsearch"] | None = None
    instance_id: str | None = None  # a manager replica's lease holder name; None: host:api_port


class LeaseSection(Section):
    """The manager, the shard controller and reporting: leases that share clusters among their instances."""

    # a dead instance's clusters (provisioner, shard controller, reporting's polls) pass to another after this
    lease_ttl_s: float = Field(default=30.0, gt=0)


class ReportingSection(Section):
    """Reporting: its polling, the metrics stream's retention (it owns that stream) and metering."""

    # reporting: polling, metric events, metering
    reporting_port: int = 9108
    poll_interval_s: float = Field(default=10.0, gt=0)
    poll_timeout_s: float = Field(default=5.0, gt=0)
    metrics_max_age_s: float = Field(default=subjects.METRICS_MAX_AGE_S, gt=0)
    metering_period_s: int = Field(default=3600, gt=0)  # shorter only for tests and demos


class ShardControllerSection(Section):
    """The shard controller's own process."""

    shard_controller_port: int = 8081


class ShardPolicySection(Section):
    """The shard controller: the policy its plans follow (`ShardPolicy` in its planning is this class)."""

    # shard controller: the policy its plans follow (sizes scaled down for tests)
    shard_target_max_gb: float = Field(default=50.0, gt=0)  # split a primary beyond this
    shard_target_gb: float = Field(default=25.0, gt=0)  # what a split aims for
    shards_per_gb_heap: int = Field(default=20, gt=0)  # a node's shard budget
    max_primaries: int = Field(default=32, gt=0)  # splits stop here
    search_per_shard_high: float = Field(default=50.0, gt=0)  # queries/s per shard copy: add a replica
    search_per_shard_low: float = Field(default=1.0, ge=0)  # below this: drop a replica
    # node count: the cluster's own load adds a node, its absence removes one; never the host's
    heap_high: float = 0.80  # heap in use
    heap_low: float = 0.30  # live heap: what the last old-generation collection left
    cpu_high: float = 80.0  # the busiest engine process, % of the CPUs its node was given
    cpu_low: float = 15.0
    disk_used_high: float = 0.80
    pool_queue_high: int = Field(default=10, ge=0)  # searches or writes waiting on a node
    search_latency_high_ms: float = Field(default=500.0, gt=0)  # mean query time between two polls
    rejections_high: int = Field(default=1, ge=1)  # rejected searches and writes within the sustain window
    sustain_samples: int = Field(default=3, gt=0)  # a signal must hold this many samples in a row
    cooldown_s: float = Field(default=120.0, ge=0)  # quiet time after an action, against flapping


class LocalDriverSection(Section):
    """The manager's local driver (and `make up`, which keeps its state in `state_dir`)."""

    # local driver: one JVM per tenant cluster
    state_dir: Path = Path(".state")
    engine_home: Path = Path.home() / ".cache" / "es-serverless" / f"engine-{ENGINE_VERSION}"
    elasticsearch_home: Path = Path.home() / ".cache" / "es-serverless" / f"engine-elasticsearch-{ELASTICSEARCH_VERSION}"
    elasticsearch819_home: Path = (Path.home() / ".cache" / "es-serverless"
                                   / f"engine-elasticsearch-{ELASTICSEARCH819_VERSION}")
    java_bin: str = "java"
    engine3_home: Path = Path.home() / ".cache" / "es-serverless" / f"engine-{OPENSEARCH3_VERSION}"
    # OpenSearch 3 needs Java 21 or later; None: the newest JDK under /usr/lib/jvm, if it is one
    java21_bin: str | None = None
    local_class_archive: bool = True  # false: engines start without the class archive or AOT cache (benches)
    # the OpenSearch a new cluster runs when it names no version, and the one standbys are warmed of;
    # 3.x falls back to 2.19.1 where setup found no Java 21 to install it
    local_opensearch_version: str = ENGINE_VERSION
    # a node step (a restart's wait for its shards' copies, a drain, a surge's hand-over) without progress
    # this long is given up with a reason; the cluster serves on the nodes it has
    local_restart_stall_s: float = Field(default=300.0, gt=0)
    local_host: str = "127.0.0.1"
    local_port_base: int = 19200
    local_port_slots: int = 100
    local_heap_min_mb: int = 256
    local_heap_max_mb: int = 512
    engine_stop_timeout_s: float = 20.0
    # cold engine JVMs started at once on this machine; more wait their turn (all at once on two
    # cores, each would take as long as all of them: 20 wakes at once would all time out)
    local_concurrent_starts: int = Field(default=2, ge=1)
    # warm engines: standby JVMs per engine, each warmed up and waiting for a node, for nodes the
    # size of a one-replica spec of warm_cpu and warm_memory (the README tour's); 0 turns them off
    warm_engines: int = Field(default=1, ge=0, le=8)
    warm_cpu: str = "500m"
    warm_memory: str = "1Gi"
    # after a standby is taken the pool refills only this much later: the new JVM's warm-up must
    # not compete for the cores with the node that was just handed out
    warm_refill_delay_s: float = Field(default=5.0, ge=0)

    @property
    def snapshots_dir(self) -> Path:
        """Local `fs` repositories, one directory per cluster, outside `clusters_dir`: a deleted
        cluster's engine data goes at once, its final snapshot stays for the retention."""
        return self.state_dir.resolve() / "snapshots"

    @property
    def restores_dir(self) -> Path:
        """Incoming repositories, one directory per cluster: hard-linked copies of the repositories
        it restores from (a clone's source), since its nodes may read no other cluster's directory."""
        return self.state_dir.resolve() / "restores"

    def repository_dirs(self, cluster_id: str) -> list[Path]:
        """A local node's `path.repo`: its cluster's own repository and incoming directory, nothing
        else, so a tenant's `fs` repository cannot reach another cluster's snapshots."""
        return [self.snapshots_dir / cluster_id, self.restores_dir / cluster_id]

    @property
    def clusters_dir(self) -> Path:
        return self.state_dir.resolve() / "clusters"

    @property
    def standby_dir(self) -> Path:
        """The warm engines' directories, beside `clusters_dir` (`stop_all_engines` looks there)."""
        return self.state_dir.resolve() / "standby"

    @field_validator("local_opensearch_version")
    @classmethod
    def _an_installable_opensearch(cls, version: str) -> str:
        if version not in (ENGINE_VERSION, OPENSEARCH3_VERSION):
            raise ValueError(f"ESS_LOCAL_OPENSEARCH_VERSION {version!r}: use {ENGINE_VERSION} or {OPENSEARCH3_VERSION}")
        return version


class KubernetesSection(Section):
    """The manager's kubernetes driver."""

    # kubernetes driver (ESS_DRIVER=kubernetes): each tenant cluster is a namespace with a
    # StatefulSet and its companions, applied with server-side apply. Engine images are
    # <registry>/<repository>:<tag>; setting ESS_IMAGE_REGISTRY moves every one of them to
    # that registry, so an air-gapped site mirrors the images once and changes one setting.
    kube_config: Path | None = None  # kubeconfig file; None: $KUBECONFIG, then ~/.kube/config
    kube_context: str | None = None  # a context of that file; None: its current context
    kube_in_cluster: bool = False  # the manager runs in a pod: use its service account
    kube_platform_namespace: str = "es-serverless"  # the control plane's namespace, let through to engines
    kube_namespace_prefix: str = "ess-"  # cluster c1a2 lives in namespace ess-c1a2
    kube_cluster_domain: str = "cluster.local"  # the DNS domain of Services in endpoints
    kube_delete_timeout_s: float = Field(default=300.0, gt=0)  # how long remove waits for a namespace to go
    kube_engine_timeout_s: float = Field(default=2.0, gt=0)  # health and drain calls from the manager to an engine
    # false: the manager cannot dial engines (it runs outside the cluster); pods' readiness makes ready
    kube_engines_reachable: bool = True
    # a drain without progress this long (or an upgrade's wait for green between pods) is given up;
    # below ESS_PROVISION_TIMEOUT_S, which would otherwise fail a cluster whose engine stopped
    # answering mid-drain instead of keeping its size
    kube_drain_timeout_s: float = Field(default=120.0, gt=0)
    image_registry: str = ""  # "": each image's public registry (docker.elastic.co, docker.io)
    elasticsearch_repository: str = "elasticsearch/elasticsearch"
    elasticsearch_image_tag: str = ELASTICSEARCH_VERSION
    opensearch_repository: str = "opensearchproject/opensearch"
    opensearch_image_tag: str = ENGINE_VERSION
    # the OpenSearch image has the repository-s3 plugin (the official one has not; build one from
    # deploy/docker/opensearch-s3.Dockerfile): without it OpenSearch clusters get no backups
    opensearch_s3_plugin: bool = False
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # comma-separated Secret names in the platform namespace, copied into every tenant namespace
    image_pull_secrets: Annotated[list[str], NoDecode] = []
    storage_class: str | None = None  # None: the cluster's default StorageClass

    @field_validator("image_pull_secrets", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value


SECTIONS: tuple[type[Section], ...] = (
    NatsSection, BindSection, ApiSection, AccessSection, LoggingSection, GatewaySection, ServerlessSection,
    BackupsSection, ProvisionerSection, LeaseSection, ReportingSection, ShardControllerSection, ShardPolicySection,
    LocalDriverSection, KubernetesSection,
)
