"""The real Kubernetes control plane the kubernetes driver's tests run against (one per session),
with the platform's own manifests applied, so the driver can act as the manager's ServiceAccount."""

from __future__ import annotations

import time
import uuid

import pytest

from services.manager.drivers.kubernetes import KubernetesDriver
from tests.deployment import kustomize_build
from tests.kube_cluster import ControlPlane
from tests.kube_testing import Admin, FakeEngine, make_driver
from tests.s3_testing import S3Server

MANAGER_ACCOUNT = ("es-serverless", "manager")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory) -> ControlPlane:
    plane = ControlPlane(tmp_path_factory.mktemp("kube"))
    started = time.monotonic()
    plane.start(nodes=3)
    try:
        # the control plane of deploy/kubernetes, as an operator installs it; its pods Ready
        # prove scheduler, controllers and kwok at work before any test counts on them
        plane.apply(kustomize_build("deploy/kubernetes"))
        plane.wait_for_deployment("es-serverless", "manager", timeout_s=180)
        print(f"\nkubernetes control plane up in {time.monotonic() - started:.1f} s, {plane.memory_mib():.0f} MiB")
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def cluster_id() -> str:
    return f"c{uuid.uuid4().hex[:12]}"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(scope="session")
def manager_token(control_plane: ControlPlane) -> str:
    return control_plane.token_of(*MANAGER_ACCOUNT)


@pytest.fixture
def driver(control_plane, manager_token, engine) -> KubernetesDriver:
    return make_driver(control_plane, manager_token, engine)


@pytest.fixture(scope="session")
def admin(control_plane) -> Admin:
    return Admin(control_plane)


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    """A real S3 API (moto's server) for the modules that test our S3 code."""
    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def bucket() -> str:
    return f"snapshots-{uuid.uuid4().hex[:8]}"
