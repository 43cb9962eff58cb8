"""`ess`, the installed console script, against the running platform, as a tenant runs it: login
kept 0600, a cluster created with waiting, listed, documents loaded and found, scaled and upgraded
with waiting, JSON for scripts, and errors that name the field and the fix with a non-zero exit;
the operator's platform backups and fleet upgrades."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from libs.common.settings import ENGINE_VERSION, OPENSEARCH3_VERSION
from tests.conftest import OPERATOR_KEY, tenant_with_key
from tests.helpers import wait_until

ESS = Path(sys.executable).parent / "ess"  # what `pip install` put on the PATH

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def tenant(api):
    return tenant_with_key(api)


@pytest.fixture(scope="module")
def env(settings, tenant, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "COLUMNS": "200",
            "ESS_API_URL": f"http://127.0.0.1:{settings.api_port}", "ESS_API_KEY": tenant[1]}


def ess(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(ESS), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster(env, api):
    made = ess(env, "clusters", "create", "cli", "--memory", "512Mi")
    assert made.returncode == 0, made.stderr
    listed = json.loads(ess(env, "clusters", "list", "--json").stdout)
    yield made, listed[0]
    api.delete(f"/clusters/{listed[0]['id']}")


def test_login_keeps_the_key_for_the_user_only(env, settings, tenant):
    bare = {k: v for k, v in env.items() if k not in ("ESS_API_URL", "ESS_API_KEY")}
    assert ess(bare, "clusters", "list").returncode == 2  # nothing stored yet
    url = f"http://127.0.0.1:{settings.api_port}"
    logged = ess(bare, "login", "--url", url, "--key", tenant[1])
    assert logged.returncode == 0, logged.stderr
    assert f"tenant {tenant[0]}" in logged.stdout
    stored = Path(bare["XDG_CONFIG_HOME"]) / "ess" / "config.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text()) == {"api_url": url, "api_key": tenant[1]}
    assert ess(bare, "clusters", "list", "--json").returncode == 0  # the stored login serves
    wrong = ess(bare, "login", "--url", url, "--key", "ess_0000000000000000_wrong")
    assert wrong.returncode == 1 and "unauthorized" in wrong.stderr
    assert json.loads(stored.read_text())["api_key"] == tenant[1]  # a refused key is not kept
    operator = ess(bare, "login", "--url", url, "--key", OPERATOR_KEY)
    assert operator.returncode == 0 and "as the operator" in operator.stdout
    whose = ess(bare, "clusters", "create", "nameless", "--no-wait")  # the operator names the tenant
    assert whose.returncode == 2 and "--tenant" in whose.stderr


def test_create_waits_until_ready_and_shows_the_endpoint(cluster, settings, tenant):
    made, listed = cluster
    assert "ready" in made.stderr  # the status line's last word
    assert listed["status"] == "ready" and listed["tenant_org_id"] == tenant[0]
    assert listed["endpoint"] == f"{settings.public_gateway_url}/{listed['id']}"
    assert listed["endpoint"] in made.stdout.replace("\n", "").replace("│", "").replace(" ", "")


def test_list_and_get_in_tables_and_json(env, cluster):
    _, listed = cluster
    table = ess(env, "clusters", "list")
    assert table.returncode == 0 and listed["id"] in table.stdout and "ready" in table.stdout
    got = json.loads(ess(env, "clusters", "get", listed["id"], "--json").stdout)
    assert got["id"] == listed["id"] and got["nodes"] == 1


def test_documents_load_with_bulk_and_are_found(env, cluster, tmp_path):
    _, listed = cluster
    lines = tmp_path / "recipes.jsonl"
    lines.write_text("\n".join(json.dumps(d) for d in [
        {"_id": "pie", "title": "apple pie"}, {"_id": "soup", "title": "leek soup"},
        {"_id": "tart", "title": "cherry tart"}]) + "\n")
    made = ess(env, "indices", "create", listed["id"], "recipes")
    assert made.returncode == 0 and "index recipes created" in made.stdout, made.stderr
    loaded = ess(env, "docs", "load", listed["id"], str(lines), "--index", "recipes", "--json")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["loaded"] == 3
    hits = json.loads(ess(env, "search", listed["id"], "recipes", "title:pie", "--json").stdout)
    assert [h["id"] for h in hits] == ["pie"]
    shown = ess(env, "search", listed["id"], "recipes", "soup")
    assert "1 hits" in shown.stdout and "leek soup" in shown.stdout


def test_bad_input_names_the_field_and_the_fix_and_exits_non_zero(env, cluster, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"title": "fine"}\n{"title": \n')
    _, listed = cluster
    not_loaded = ess(env, "docs", "load", listed["id"], str(broken), "--index", "broken")
    assert not_loaded.returncode == 2 and "broken.jsonl:2 is not a JSON document" in not_loaded.stderr
    refused = ess(env, "clusters", "create", "bad", "--memory", "1Gb", "--no-wait")
    assert refused.returncode == 1
    assert "memory" in refused.stderr and "fix: a Kubernetes memory quantity" in refused.stderr
    absent = ess(env, "clusters", "get", "c000000000000", "--json")
    assert absent.returncode == 1 and "no cluster c000000000000" in absent.stderr and absent.stdout == ""


def test_a_snapshot_taken_with_the_cli_is_listed_and_undeleting_a_live_cluster_is_refused(env, cluster):
    _, listed = cluster
    taken = ess(env, "snapshots", "create", listed["id"], "--json")
    assert taken.returncode == 0, taken.stderr
    name = json.loads(taken.stdout)["name"]
    listing = ess(env, "snapshots", "list", listed["id"], "--json")
    assert listing.returncode == 0 and name in {s["name"] for s in json.loads(listing.stdout)["snapshots"]}
    undelete = ess(env, "clusters", "undelete", listed["id"])
    assert undelete.returncode == 1 and undelete.stderr.strip()  # the API's reason, not a traceback


def test_scale_waits_until_the_nodes_serve(env, cluster):
    _, listed = cluster
    scaled = ess(env, "clusters", "scale", listed["id"], "--nodes", "2", "--json")
    assert scaled.returncode == 0, scaled.stderr
    answer = json.loads(scaled.stdout)
    assert (answer["status"], answer["nodes"], answer["replicas"]) == ("ready", 2, 2)
    hits = json.loads(ess(env, "search", listed["id"], "recipes", "title:tart", "--json").stdout)
    assert [h["id"] for h in hits] == ["tart"]  # the documents served on through the scale


def test_upgrade_waits_until_every_node_runs_the_new_version_and_the_documents_serve(env, cluster):
    _, listed = cluster
    upgraded = ess(env, "clusters", "upgrade", listed["id"], OPENSEARCH3_VERSION, "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    answer = json.loads(upgraded.stdout)
    assert (answer["status"], answer["version"], answer["nodes"]) == ("ready", OPENSEARCH3_VERSION, 2)
    hits = json.loads(ess(env, "search", listed["id"], "recipes", "title:tart", "--json").stdout)
    assert [h["id"] for h in hits] == ["tart"]
    refused = ess(env, "clusters", "upgrade", listed["id"], ENGINE_VERSION)
    assert refused.returncode == 1 and "cannot go down" in refused.stderr, refused.stderr


def test_the_operator_starts_a_fleet_upgrade_and_follows_it(env):
    operator = {**env, "ESS_API_KEY": OPERATOR_KEY}
    bad = ess(operator, "platform", "upgrade", "--from", ENGINE_VERSION, "--to", "2.18.0")
    assert bad.returncode == 1 and "to_version" in bad.stderr and "not available" in bad.stderr, bad.stderr
    started = ess(operator, "platform", "upgrade", "--from", ENGINE_VERSION, "--to", OPENSEARCH3_VERSION,
                  "--tenant", "nobody-has-this", "--json")
    assert started.returncode == 0, started.stderr
    upgrade = json.loads(started.stdout)
    assert upgrade["targets"] == [] and upgrade["tenant_org_id"] == "nobody-has-this"
    wait_until(lambda: json.loads(ess(operator, "platform", "upgrades", upgrade["id"], "--json").stdout)["state"]
               == "done", 30, what="an upgrade with nothing to move done")
    assert upgrade["id"] in ess(operator, "platform", "upgrades").stdout
    assert ess(env, "platform", "upgrades").returncode == 1  # a tenant's key may not


def test_the_operator_backs_up_the_platform_and_a_restore_over_live_state_is_refused(env):
    operator = {**env, "ESS_API_KEY": OPERATOR_KEY}
    taken = ess(operator, "platform", "backup", "--json")
    assert taken.returncode == 0, taken.stderr
    manifest = json.loads(taken.stdout)
    assert manifest["buckets"]["ess_tenants"] >= 1 and all(f["sha256"] for f in manifest["files"])
    listed = ess(operator, "platform", "backups")
    assert listed.returncode == 0 and manifest["id"] in listed.stdout
    refused = ess(operator, "platform", "restore", manifest["id"], "--yes")
    assert refused.returncode == 1 and "control_plane_not_empty" in refused.stderr  # nothing was written
    assert ess(env, "platform", "backups").returncode == 1  # a tenant's key may not
