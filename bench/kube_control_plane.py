"""The Kubernetes control plane the driver's tests start: how long until it serves (API server
ready, nodes Ready through kwok, a pod scheduled and Ready), and its resident memory then.

Run: .venv/bin/python bench/kube_control_plane.py [runs]   (needs `make kube-tools` once)
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import statistics
import tempfile
import time
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kube_cluster import ControlPlane


def _pod_ready(plane: ControlPlane) -> None:
    core = client.CoreV1Api(plane.admin())
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="probe"),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))
    while True:
        try:
            core.create_namespaced_pod("default", pod)
            break
        except ApiException as exc:  # 403 until the controller manager made the default ServiceAccount
            if exc.status != 403:
                raise
            time.sleep(0.05)
    while True:
        status = core.read_namespaced_pod("probe", "default").status
        if any(c.type == "Ready" and c.status == "True" for c in status.conditions or []):
            return
        time.sleep(0.05)


def measure(runs: int) -> list[str]:
    serving, ready, memory = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as workdir:
            plane = ControlPlane(Path(workdir))
            started = time.perf_counter()
            try:
                plane.start(nodes=3)
                serving.append(time.perf_counter() - started)
                _pod_ready(plane)
                ready.append(time.perf_counter() - started)
                memory.append(plane.memory_mib())
            finally:
                plane.stop()
    return [f"control plane serving: {_spread(serving, 's', 2)}",
            f"first pod Ready (kwok): {_spread(ready, 's', 2)}",
            f"resident memory then: {_spread(memory, 'MiB', 0)}"]


def _spread(values: list[float], unit: str, digits: int) -> str:
    return (f"median {statistics.median(values):.{digits}f} {unit}, min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f} ({len(values)} runs)")


if __name__ == "__main__":
    print("\n".join(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
