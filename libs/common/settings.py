"""Platform settings, read from the environment with the `ESS_` prefix.

Defaults serve the local run on one machine; every address can be overridden.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENGINE_VERSION = "2.19.1"  # must match deploy/engine/pom.xml (a test checks it)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESS_", extra="ignore")

    # NATS: the spine and the store
    nats_url: str = "nats://127.0.0.1:4222"
    nats_connect_timeout_s: float = 2.0

    # manager REST API
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    shard_controller_port: int = 8081
    reporting_port: int = 9108

    # logging: "console" (key=value, for a terminal) or "json" (for containers)
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"

    # provisioning
    driver: Literal["local"] = "local"
    reconcile_interval_s: float = Field(default=2.0, gt=0)
    ready_poll_interval_s: float = Field(default=0.2, gt=0)
    provision_timeout_s: float = Field(default=180.0, gt=0)
    default_engine: Literal["opensearch", "elasticsearch"] = "opensearch"
    idempotency_ttl_s: float = 24 * 3600

    # local driver: one JVM per tenant cluster
    state_dir: Path = Path(".state")
    engine_home: Path = Path.home() / ".cache" / "es-serverless" / f"engine-{ENGINE_VERSION}"
    java_bin: str = "java"
    local_host: str = "127.0.0.1"
    local_port_base: int = 19200
    local_port_slots: int = 100
    local_heap_min_mb: int = 256
    local_heap_max_mb: int = 512
    engine_stop_timeout_s: float = 20.0

    @property
    def clusters_dir(self) -> Path:
        return self.state_dir.resolve() / "clusters"
