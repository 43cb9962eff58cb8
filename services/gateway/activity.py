"""What the gateway saw: requests and bytes per cluster, reported in batches (one event per
active cluster per flush, not a KV write per request) and exposed on /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from libs.common.events import ClusterActivity
from libs.common.models import utcnow


@dataclass
class Tally:
    tenant_org_id: str
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_request_at: datetime | None = None


@dataclass
class Activity:
    gateway: str
    pending: dict[str, Tally] = field(default_factory=dict)  # since the last flush
    totals: dict[str, Tally] = field(default_factory=dict)  # since start, for /metrics
    in_flight: dict[str, int] = field(default_factory=dict)
    tenants: dict[str, str] = field(default_factory=dict)  # cluster -> tenant, of clusters seen
    wakes: int = 0
    reads_sent_again: int = 0  # reads the engine failed for a moment, sent again (here and by the pump)
    busy_in_pump: set[str] = field(default_factory=set)  # clusters with requests in the pump at its last report

    def started(self, cluster_id: str, tenant_org_id: str) -> None:
        self.tenants[cluster_id] = tenant_org_id
        self.in_flight[cluster_id] = self.in_flight.get(cluster_id, 0) + 1

    def finished(self, cluster_id: str, tenant_org_id: str, bytes_in: int, bytes_out: int) -> None:
        self.in_flight[cluster_id] -= 1
        self._count(cluster_id, tenant_org_id, 1, bytes_in, bytes_out)

    def pumped(self, reports: list[dict]) -> None:
        """The pump's counts since its last report, metered as the gateway's own."""
        for report in reports:
            cluster_id, tenant = str(report["cluster"]), str(report["tenant"])
            self.tenants[cluster_id] = tenant
            if int(report.get("in_flight", 0)) > 0:
                self.busy_in_pump.add(cluster_id)
            self.reads_sent_again += int(report.get("sent_again", 0))
            if int(report.get("requests", 0)) > 0:
                self._count(cluster_id, tenant, int(report["requests"]), int(report.get("bytes_in", 0)),
                            int(report.get("bytes_out", 0)))

    def _count(self, cluster_id: str, tenant_org_id: str, requests: int, bytes_in: int, bytes_out: int) -> None:
        now = utcnow()
        for book in (self.pending, self.totals):
            tally = book.get(cluster_id) or book.setdefault(cluster_id, Tally(tenant_org_id))
            tally.requests += requests
            tally.bytes_in += bytes_in
            tally.bytes_out += bytes_out
            tally.last_request_at = now

    def take(self) -> list[ClusterActivity]:
        """The reports of this flush; a cluster with a request still running counts as active now."""
        pending, self.pending = self.pending, {}
        now = utcnow()
        busy = {c for c, count in self.in_flight.items() if count > 0} | self.busy_in_pump
        self.busy_in_pump = set()
        for cluster_id in busy:
            pending.setdefault(cluster_id, Tally(self.tenants[cluster_id])).last_request_at = now
        return [ClusterActivity(cluster_id=cluster_id, tenant_org_id=t.tenant_org_id, gateway=self.gateway,
                                requests=t.requests, bytes_in=t.bytes_in, bytes_out=t.bytes_out,
                                last_request_at=t.last_request_at or now)
                for cluster_id, t in pending.items()]

    def put_back(self, reports: list[ClusterActivity]) -> None:
        """NATS was away: the counts go into the next flush instead of being lost."""
        for report in reports:
            tally = self.pending.setdefault(report.cluster_id, Tally(report.tenant_org_id))
            tally.requests += report.requests
            tally.bytes_in += report.bytes_in
            tally.bytes_out += report.bytes_out
            if tally.last_request_at is None or tally.last_request_at < report.last_request_at:
                tally.last_request_at = report.last_request_at


class ActivityCollector:
    """The gateway's counters on /metrics, per tenant and cluster."""

    def __init__(self, activity: Activity):
        self._activity = activity

    def collect(self):
        labels = ["tenant", "cluster"]
        requests = CounterMetricFamily("ess_gateway_requests", "Requests forwarded to a cluster", labels=labels)
        bytes_in = CounterMetricFamily("ess_gateway_received_bytes", "Request body bytes from clients", labels=labels)
        bytes_out = CounterMetricFamily("ess_gateway_sent_bytes", "Response body bytes to clients", labels=labels)
        for cluster_id, tally in self._activity.totals.items():
            requests.add_metric([tally.tenant_org_id, cluster_id], tally.requests)
            bytes_in.add_metric([tally.tenant_org_id, cluster_id], tally.bytes_in)
            bytes_out.add_metric([tally.tenant_org_id, cluster_id], tally.bytes_out)
        in_flight = GaugeMetricFamily("ess_gateway_in_flight", "Requests being forwarded or held", labels=["cluster"])
        for cluster_id, count in self._activity.in_flight.items():
            in_flight.add_metric([cluster_id], count)
        wakes = CounterMetricFamily("ess_gateway_wakes", "Wake requests sent for hibernated clusters")
        wakes.add_metric([], self._activity.wakes)
        sent_again = CounterMetricFamily("ess_gateway_reads_sent_again",
                                         "Reads the engine failed for a moment (a copy gone under them), sent again")
        sent_again.add_metric([], self._activity.reads_sent_again)
        return [requests, bytes_in, bytes_out, in_flight, wakes, sent_again]
