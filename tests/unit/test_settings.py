"""Settings in sections: each setting declared once, each service reading only its sections, and
the README's configuration table naming exactly the variables the sections declare."""

import os
import re
from pathlib import Path

import pytest

from libs.common import settings as settings_module
from libs.common.settings import (
    SECTIONS,
    AccessSection,
    ApiSection,
    BackupsSection,
    BindSection,
    GatewaySection,
    KubernetesSection,
    LeaseSection,
    LocalDriverSection,
    LoggingSection,
    NatsSection,
    ProvisionerSection,
    ReportingSection,
    Section,
    ServerlessSection,
    ShardControllerSection,
    ShardPolicySection,
)
from services.gateway.settings import GatewaySettings
from services.manager.settings import ManagerSettings
from services.reporting.settings import ReportingSettings
from services.shard_controller.planning import ShardPolicy
from services.shard_controller.settings import ShardControllerSettings

REPO = Path(__file__).resolve().parents[2]

SERVICES = {
    "manager": (ManagerSettings, {NatsSection, LoggingSection, BindSection, ApiSection, AccessSection, GatewaySection,
                                  ServerlessSection, BackupsSection, ProvisionerSection, LeaseSection,
                                  LocalDriverSection, KubernetesSection}),
    "shard_controller": (ShardControllerSettings, {NatsSection, LoggingSection, BindSection, ShardControllerSection,
                                                   LeaseSection, ShardPolicySection}),
    "reporting": (ReportingSettings, {NatsSection, LoggingSection, BindSection, ReportingSection, LeaseSection}),
    "gateway": (GatewaySettings, {NatsSection, LoggingSection, AccessSection, GatewaySection, ServerlessSection}),
}


def test_every_section_is_listed_and_no_field_is_declared_in_two():
    declared = {cls for cls in vars(settings_module).values()
                if isinstance(cls, type) and issubclass(cls, Section) and cls is not Section}
    assert declared == set(SECTIONS)
    owner: dict[str, str] = {}
    for section in SECTIONS:
        assert section.__bases__ == (Section,), f"{section.__name__} inherits another section's fields"
        for name in section.model_fields:
            assert name not in owner, f"{name} is declared in {owner[name]} and {section.__name__}"
            owner[name] = section.__name__


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_reads_only_its_sections(service):
    settings_class, sections = SERVICES[service]
    assert {base for cls in settings_class.__mro__ for base in cls.__bases__ if base in SECTIONS} == sections
    assert set(settings_class.model_fields) == {name for s in sections for name in s.model_fields}
    # and its modules name no other section
    other = {s.__name__ for s in SECTIONS} - {s.__name__ for s in sections}
    for path in (REPO / "services" / service).rglob("*.py"):
        named = set(re.findall(r"\b[A-Z]\w*Section\b", path.read_text()))
        assert not named & other, f"{path.relative_to(REPO)} names {sorted(named & other)}"


def test_a_service_has_no_fields_of_parts_it_does_not_run():
    for settings_class in (ReportingSettings, GatewaySettings, ShardControllerSettings):
        fields = settings_class.model_fields
        assert not [f for f in fields if f.startswith(("kube_", "local_", "image_", "snapshot_"))], settings_class
        assert "driver" not in fields and "state_dir" not in fields
    assert "heap_high" not in ManagerSettings.model_fields and "poll_interval_s" not in ManagerSettings.model_fields
    assert "rate_limit_burst" not in GatewaySettings.model_fields and "operator_key" in GatewaySettings.model_fields


def test_the_shard_policy_is_its_section_so_its_defaults_are_written_once():
    assert ShardPolicy is ShardPolicySection
    planning = (REPO / "services" / "shard_controller" / "planning.py").read_text()
    for name in ShardPolicySection.model_fields:
        assert not re.search(rf"^\s*{name}\s*:", planning, re.M), f"planning declares {name} again"


def test_the_sections_keep_their_validation_and_parsing(monkeypatch):
    monkeypatch.setenv("ESS_IMAGE_PULL_SECRETS", "regcred, other ,")
    assert KubernetesSection().image_pull_secrets == ["regcred", "other"]
    assert ManagerSettings().image_pull_secrets == ["regcred", "other"]
    with pytest.raises(ValueError):
        ApiSection(rate_limit_burst=0)
    with pytest.raises(ValueError):
        ShardPolicy(sustain_samples=0)
    gateway = GatewaySection(gateway_host="gw", gateway_port=1)
    assert gateway.public_gateway_url == "http://gw:1"
    nats = NatsSection(nats_url="nats://a:4222, nats://b:4222,nats://c:4222,")
    assert nats.nats_servers == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    with pytest.raises(ValueError):
        NatsSection(nats_replicas=0)
    local = LocalDriverSection(state_dir=Path("/tmp/ess-state"))
    assert (local.clusters_dir, local.snapshots_dir) == (Path("/tmp/ess-state/clusters"), Path("/tmp/ess-state/snapshots"))


def readme_variables() -> set[str]:
    text = (REPO / "README.md").read_text()
    configuration = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in configuration.splitlines() if line.startswith("| `ESS_")]
    return {name for row in rows for name in re.findall(r"`ESS_([A-Z0-9_]+)`", row)}


def test_the_readme_table_names_exactly_the_sections_variables():
    fields = {name.upper() for section in SECTIONS for name in section.model_fields}
    listed = readme_variables()
    assert sorted(listed - fields) == [], "in the README's table, but no setting"
    assert sorted(fields - listed) == [], "a setting the README's table does not list"


def test_gateway_workers_default_to_the_cores_given_less_the_deciders(tmp_path, monkeypatch):
    """ESS_GATEWAY_WORKERS: a container's CPU quota counts, not the host's cores; one core is the
    Python gateway's; never fewer than one pump; an explicit count wins."""
    monkeypatch.delenv("ESS_GATEWAY_WORKERS", raising=False)  # the shared test platform's, when run after it
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    cpu_max = tmp_path / "cpu.max"
    for text, cores in (("max 100000", 8), ("150000 100000", 2), ("100000 100000", 1), ("50000 100000", 1),
                        ("1600000 100000", 8)):
        cpu_max.write_text(text + "\n")
        assert settings_module.cores_given(cpu_max) == cores, text
    assert settings_module.cores_given(tmp_path / "absent") == 8
    monkeypatch.setattr(settings_module, "cores_given", lambda: 2)
    assert GatewaySection().pump_workers == 1
    monkeypatch.setattr(settings_module, "cores_given", lambda: 1)
    assert GatewaySection().pump_workers == 1
    monkeypatch.setattr(settings_module, "cores_given", lambda: 4)
    assert GatewaySection().pump_workers == 3
    monkeypatch.setenv("ESS_GATEWAY_WORKERS", "2")
    assert GatewaySection().pump_workers == 2
    monkeypatch.setenv("ESS_GATEWAY_WORKERS", "0")
    with pytest.raises(ValueError, match="gateway_workers"):
        GatewaySection()
