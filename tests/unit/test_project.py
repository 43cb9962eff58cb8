"""Project-wide rules: layers, one engine version, one subject module, the AsyncAPI document."""

import json
import re
import subprocess
import sys
from pathlib import Path

from libs.common.settings import ELASTICSEARCH_VERSION, ENGINE_VERSION

REPO = Path(__file__).resolve().parents[2]


def test_layers_hold():
    """libs imports no service or tool; no service imports another; the manager's layers hold."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = (REPO / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert f"{contracts} kept, 0 broken" in result.stdout


def test_engine_recipe_and_settings_name_the_same_version():
    pom = (REPO / "deploy" / "engine" / "pom.xml").read_text()
    runner = re.search(r"<opensearch.runner.version>([\d.]+)<", pom).group(1)
    knn = re.search(r"<opensearch.knn.version>([\d.]+)<", pom).group(1)
    assert runner == knn
    assert runner.startswith(ENGINE_VERSION + ".")
    elasticsearch = (REPO / "deploy" / "engine" / "elasticsearch" / "pom.xml").read_text()
    assert re.search(r"<elasticsearch.version>([\d.]+)<", elasticsearch).group(1) == ELASTICSEARCH_VERSION


def test_no_module_but_subjects_spells_a_subject():
    offenders = []
    for path in list((REPO / "services").rglob("*.py")) + list((REPO / "libs").rglob("*.py")):
        if path.name != "subjects.py" and re.search(r"[\"']ess\.cluster\.", path.read_text()):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_asyncapi_document_lists_the_lifecycle_subjects():
    from services.manager.app import create_app
    from services.manager.settings import ManagerSettings

    app = create_app(ManagerSettings())
    document = json.loads(app.state.outbox.asyncapi_json())
    addresses = json.dumps(document["channels"])
    assert "ess.cluster.*.*.desired" in addresses
    assert "ess.cluster.*.*.status" in addresses
    assert "ClusterDesiredStateChanged" in json.dumps(document["components"])
