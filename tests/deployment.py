"""Reading what deploy/ and docker-compose.yml describe, as Docker and Kubernetes would.

No Docker engine or Kubernetes runs here, so tests read the files the way those tools do:
compose with its `${VAR:-default}` interpolation, the Kubernetes manifests through the real
`kustomize` binary (`make kustomize` builds it from the Go module proxy).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

REPO = Path(__file__).resolve().parents[1]
KUSTOMIZE_VERSION = "v5.5.0"  # as in the Makefile
_DEFAULT_KUSTOMIZE = Path.home() / ".cache/es-serverless/tools" / f"kustomize-{KUSTOMIZE_VERSION}" / "kustomize"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def kustomize_binary() -> str:
    for candidate in (os.environ.get("KUSTOMIZE"), str(_DEFAULT_KUSTOMIZE), shutil.which("kustomize")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise AssertionError("kustomize not found: run `make kustomize` (needs Go) or set KUSTOMIZE")


def kustomize_build(directory: str) -> list[dict[str, Any]]:
    result = subprocess.run([kustomize_binary(), "build", str(REPO / directory)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def round_trips(obj: dict[str, Any]) -> bool:
    """Whether the client's OpenAPI model of the kind keeps every key (a misspelt one is dropped)."""
    api = client.ApiClient()
    model = api.deserialize(json.dumps(obj), f"V1{obj['kind']}", "application/json")
    return api.sanitize_for_serialization(model) == obj


def interpolate(value: Any, environment: dict[str, str] | None = None) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}` and `$$`, with defaults unless `environment` sets VAR."""
    environment = environment or {}
    if isinstance(value, dict):
        return {k: interpolate(v, environment) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environment) for v in value]
    if not isinstance(value, str):
        return value
    text = value.replace("$$", "\0")
    text = _VARIABLE.sub(lambda m: environment.get(m["name"]) or m["default"] or "", text)
    return text.replace("\0", "$")


def compose(environment: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load((REPO / "docker-compose.yml").read_text()), environment)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}
