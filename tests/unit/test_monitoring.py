"""deploy/monitoring: Prometheus config and rules pass promtool, rule tests pass, and every
metric the rules and dashboards use is one the platform exports."""

import json
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from libs.common.events import ClusterLoad, MetricsSample, OperationRates
from libs.common.metrics import ClusterStats, IndexStats, NodeLoad
from libs.common.models import ClusterRecord, ClusterSpec
from services.reporting.exposition import FleetCollector, ServiceMetrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: `make test` installs the Debian package prometheus"
    return subprocess.run([binary, *args], cwd=MONITORING, capture_output=True, text=True)


@pytest.mark.parametrize("args", [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"),
                                  ("test", "rules", "tests/alerts_test.yml")])
def test_promtool_accepts(args):
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    metrics.poll_errors.labels("acme", "c1").inc()
    metrics.events_published.labels("metrics").inc()
    # a sample with every figure known (a first poll has no rates or engine CPU yet)
    sample = MetricsSample(cluster_id="c1", tenant_org_id="acme", taken_at=datetime.now(timezone.utc),
                           rates=OperationRates(search_per_s=1, search_latency_ms=3),
                           load=ClusterLoad(engine_cpu_percent=12, search_rejected=0, write_rejected=0),
                           stats=ClusterStats(health="green", nodes=1, per_index=[IndexStats(name="i")],
                                              node_loads=[NodeLoad(node_id="n1")]))
    record = ClusterRecord(id="c1", tenant_org_id="acme", user="u", service_name="s", formed_at=sample.taken_at,
                           snapshot_failure="auto-1: disk full",
                           spec=ClusterSpec(replicas=1, cpu="1", memory="1Gi", storage="1Gi", version="2.19.1"))
    registry.register(FleetCollector({"c1": sample}, {"c1": ("acme", True)}, {"c1": record}))
    text = generate_latest(registry).decode()
    return set(re.findall(r"^(ess_\w+?)(?:\{| )", text, re.M))


def used_names(text: str) -> set[str]:
    return set(re.findall(r"\b(ess_\w+)", text))


def test_rules_use_only_exported_metrics():
    assert used_names((MONITORING / "alerts.yml").read_text()) <= exported_names()


@pytest.mark.parametrize("dashboard", ["fleet.json", "tenant.json"])
def test_dashboards_use_only_exported_metrics(dashboard):
    board = json.loads((MONITORING / "grafana" / "dashboards" / dashboard).read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in board["templating"]["list"]]
    assert exprs
    assert set().union(*(used_names(e) for e in exprs)) <= exported_names()
