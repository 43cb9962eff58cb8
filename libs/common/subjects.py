"""Every NATS subject, stream, durable consumer and KV bucket of the platform.

Nothing else spells a subject string.
"""

from __future__ import annotations

import re

DUPLICATE_WINDOW_S = 120.0  # a stream drops a message re-sent with the same Nats-Msg-Id within this

# JetStream KV buckets: control-plane state
KV_CLUSTERS = "ess_clusters"  # cluster id -> ClusterRecord
KV_CLUSTER_NAMES = "ess_cluster_names"  # "<tenant>.<service_name>" -> cluster id
KV_IDEMPOTENCY = "ess_idempotency"  # hashed Idempotency-Key -> first answer
KV_TENANTS = "ess_tenants"  # tenant id -> TenantRecord
KV_QUOTA_CLAIMS = "ess_quota_claims"  # tenant id -> its clusters' claims on its quotas (TenantClaims)
KV_API_KEYS = "ess_api_keys"  # key id -> ApiKeyRecord (a salted hash, never the key)
KV_PROVISIONER_LEASES = "ess_provisioner_leases"  # cluster id -> the manager replica provisioning it
KV_FLEET_UPGRADES = "ess_fleet_upgrades"  # upgrade id -> FleetUpgrade (the operator's, and what it moved)
KV_PLATFORM = "ess_platform"  # platform-wide facts: "restore" -> the control-plane restore under way or done

# the lifecycle stream: desired-state changes in, status changes out
LIFECYCLE_STREAM = "ESS_CLUSTER_LIFECYCLE"
LIFECYCLE_SUBJECTS = ["ess.cluster.>"]
LIFECYCLE_MAX_AGE_S = 7 * 24 * 3600.0
DESIRED_ALL = "ess.cluster.*.*.desired"
STATUS_ALL = "ess.cluster.*.*.status"
PROVISIONER_DURABLE = "provisioner"


def cluster_desired(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.cluster.{tenant_org_id}.{cluster_id}.desired"


def cluster_status(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.cluster.{tenant_org_id}.{cluster_id}.status"


def cluster_name_key(tenant_org_id: str, service_name: str) -> str:
    return f"{tenant_org_id}.{service_name}"

# metrics: one sample per poll, per tenant and cluster; kept briefly
METRICS_STREAM = "ESS_METRICS"
METRICS_SUBJECTS = ["ess.metrics.>"]
METRICS_MAX_AGE_S = 3600.0  # reporting may keep them longer or shorter (ESS_METRICS_MAX_AGE_S)
METRICS_ALL = "ess.metrics.*.*"


def cluster_metrics(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.metrics.{tenant_org_id}.{cluster_id}"


# metering: one UsageRecord per cluster and period; kept long
USAGE_STREAM = "ESS_USAGE"
USAGE_SUBJECTS = ["ess.usage.>"]
USAGE_ALL = "ess.usage.*.*"
USAGE_MAX_AGE_S = 400 * 24 * 3600.0
USAGE_DUPLICATE_WINDOW_S = 2 * 3600.0  # a record re-sent after a restart within this is dropped
KV_USAGE_METERS = "ess_usage_meters"  # cluster id -> the open period's running totals
KV_REPORTING_LEASES = "ess_reporting_leases"  # cluster id -> the reporting replica polling it


def cluster_usage(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.usage.{tenant_org_id}.{cluster_id}"


def tenant_usage(tenant_org_id: str) -> str:
    return f"ess.usage.{tenant_org_id}.*"


def usage_message_id(cluster_id: str, period_start_epoch: int) -> str:
    return f"usage.{cluster_id}.{period_start_epoch}"

# the shard controller: its plans and actions go to the cluster's lifecycle subjects
SCALE_ALL = "ess.cluster.*.*.scale"
MANAGER_SCALE_DURABLE = "manager-scale"
CONTROLLER_DURABLE = "shard-controller"  # the one consumer all instances shared once: removed at start
CONTROLLER_DURABLE_IDLE_S = 600.0  # a gone instance's consumer is removed by the server after this


def controller_durable(instance: str) -> str:
    """Each shard controller instance's own consumer of the metrics: every instance sees every
    sample (a plan needs a cluster's whole history), the holder of the cluster's lease acts."""
    return f"{CONTROLLER_DURABLE}-{re.sub(r'[^A-Za-z0-9_-]', '-', instance)}"


KV_SHARD_PLANS = "ess_shard_plans"  # cluster id -> the controller's latest plan and operation
KV_CONTROLLER_LEASES = "ess_controller_leases"  # cluster id -> the controller instance acting on it


def cluster_plan(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.cluster.{tenant_org_id}.{cluster_id}.plan"


def cluster_action(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.cluster.{tenant_org_id}.{cluster_id}.action"


def cluster_scale(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.cluster.{tenant_org_id}.{cluster_id}.scale"


# serverless: the gateway asks the manager to wake a hibernated cluster (lifecycle stream)
WAKE_ALL = "ess.cluster.*.*.wake"
MANAGER_WAKE_DURABLE = "manager-wake"


def cluster_wake(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.cluster.{tenant_org_id}.{cluster_id}.wake"


def cluster_events(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.cluster.{tenant_org_id}.{cluster_id}.*"


# activity: the gateway's batched request counts per cluster, for hibernation and metering;
# declared by the gateway (its publisher), read by the manager and reporting
ACTIVITY_STREAM = "ESS_ACTIVITY"
ACTIVITY_SUBJECTS = ["ess.activity.>"]
ACTIVITY_ALL = "ess.activity.*.*"
ACTIVITY_MAX_AGE_S = 24 * 3600.0
MANAGER_ACTIVITY_DURABLE = "manager-activity"
REPORTING_ACTIVITY_DURABLE = "reporting-activity"


def cluster_activity(tenant_org_id: str, cluster_id: str) -> str:
    return f"ess.activity.{tenant_org_id}.{cluster_id}"


# audit: every mutating API call, who, what, when, result; kept long
AUDIT_STREAM = "ESS_AUDIT"
AUDIT_SUBJECTS = ["ess.audit.>"]
AUDIT_MAX_AGE_S = 400 * 24 * 3600.0
AUDIT_ALL = "ess.audit.>"


def tenant_audit(tenant_org_id: str | None) -> str:
    return f"ess.audit.{tenant_org_id or '_platform'}"
