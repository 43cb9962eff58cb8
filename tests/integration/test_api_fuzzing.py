"""Hostile input: schemathesis, driven by the OpenAPI document, finds no 5xx and no answer
that breaks the documented schema. It runs as a tenant whose quota allows no cluster, so the
fuzzing cannot start engines."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ISSUED_KEYS


def test_schemathesis_finds_no_server_error(api, settings, tmp_path):
    assert api.post("/tenants", json={"tenant_org_id": "fuzzer", "quotas": {"max_clusters": 0}}).status_code == 201
    key = api.post("/tenants/fuzzer/keys", json={}).json()["key"]
    ISSUED_KEYS.append(key)
    binary = Path(sys.executable).parent / "schemathesis"
    assert binary.exists() or shutil.which("schemathesis"), "schemathesis missing: make test installs it"
    result = subprocess.run(
        [str(binary), "run", f"http://127.0.0.1:{settings.api_port}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--header", f"Authorization: ApiKey {key}",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--workers", "1",
         "--suppress-health-check", "all", "--request-timeout", "30", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
