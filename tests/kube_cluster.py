"""A real Kubernetes control plane for tests: etcd, kube-apiserver (token auth, RBAC),
kube-controller-manager, kube-scheduler and kwok, on loopback ports, stopped by pid.

The binaries are built once from the Go module proxy by `make kube-tools`
(deploy/tools/build.sh) into ~/.cache/es-serverless/tools. kwok plays the kubelets: it keeps
fake nodes Ready and marks the pods scheduled onto them Running and Ready (no container runs,
no probe is executed). Volumes come from the controller manager's host-path provisioner
behind a default StorageClass, so StatefulSet claims bind as on a real cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client, dynamic

from devrun.supervisor import free_port

TOOLS = Path(os.environ.get("ESS_TOOLS_DIR", Path.home() / ".cache/es-serverless/tools"))
# as in deploy/tools/build.sh
BINARIES = {
    "etcd": TOOLS / "etcd-v3.6.16" / "etcd",
    "kube-apiserver": TOOLS / "kubernetes-v1.34.4" / "kube-apiserver",
    "kube-controller-manager": TOOLS / "kubernetes-v1.34.4" / "kube-controller-manager",
    "kube-scheduler": TOOLS / "kubernetes-v1.34.4" / "kube-scheduler",
    "kwok": TOOLS / "kwok-v0.8.0" / "kwok",
}
ADMIN_TOKEN = "admin-token-for-tests"
FAKE_NODE = {"kwok.x-k8s.io/node": "fake"}
STORAGE_CLASS = "standard"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def _rsa_key_files(directory: Path) -> tuple[Path, Path]:
    """The key pair service-account tokens are signed and checked with."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "sa.key", directory / "sa.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@dataclass
class ControlPlane:
    workdir: Path
    url: str = ""
    ca_file: Path | None = None
    kubeconfig: Path | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    # -- starting and stopping --------------------------------------------------------------
    def start(self, nodes: int = 3) -> None:
        missing = [str(path) for path in [*BINARIES.values(), BINARIES["kwok"].parent / "stages.yaml"]
                   if not path.is_file()]
        assert not missing, f"not built: {', '.join(missing)}; run `make kube-tools` (needs Go, ~16 min once)"
        try:
            self._start_etcd_and_apiserver()
            self._start_the_rest()
            self.add_nodes(nodes)
            self._default_storage_class()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        process = subprocess.Popen([str(BINARIES.get(name, name)), *args], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.processes[name] = process
        return process

    def _start_etcd_and_apiserver(self) -> None:
        client_port, peer_port, api_port = free_port(), free_port(), free_port()
        peer = f"http://127.0.0.1:{peer_port}"
        self._spawn("etcd", "--name=test", f"--data-dir={self.workdir / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{client_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{client_port}",
                    f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=test={peer}", "--unsafe-no-fsync", "--log-level=warn")
        (self.workdir / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n')
        private, public = _rsa_key_files(self.workdir)
        pki = self.workdir / "pki"
        self._spawn("kube-apiserver", f"--etcd-servers=http://127.0.0.1:{client_port}",
                    "--bind-address=127.0.0.1", f"--secure-port={api_port}", f"--cert-dir={pki}",
                    "--endpoint-reconciler-type=none",  # no kubernetes Service endpoint on loopback
                    f"--token-auth-file={self.workdir / 'tokens.csv'}", "--authorization-mode=RBAC",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={public}", f"--service-account-signing-key-file={private}",
                    "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true", "--profiling=false")
        self.url = f"https://127.0.0.1:{api_port}"
        self._wait("kube-apiserver", f"{self.url}/readyz", timeout_s=60)
        self.ca_file = pki / "apiserver.crt"  # self-signed, with its own CA in the bundle
        self.kubeconfig = self.write_kubeconfig(self.workdir / "admin.kubeconfig", ADMIN_TOKEN)

    def _start_the_rest(self) -> None:
        kubeconfig = f"--kubeconfig={self.kubeconfig}"
        self._spawn("kube-controller-manager", kubeconfig, "--leader-elect=false", "--secure-port=0",
                    "--enable-hostpath-provisioner", "--service-cluster-ip-range=10.96.0.0/16",
                    "--pvclaimbinder-sync-period=1s",  # claims bind within a second, not fifteen
                    f"--root-ca-file={self.ca_file}", "--use-service-account-credentials=false")
        # a pod found unschedulable while its claim binds can miss the "claim bound" event and then
        # wait up to 5 minutes before the scheduler tries it again (seen once: a test timed out)
        self._spawn("kube-scheduler", kubeconfig, "--leader-elect=false", "--secure-port=0",
                    "--pod-max-in-unschedulable-pods-duration=5s")
        # kwok renews each node's Lease, so the node lifecycle controller keeps the nodes Ready
        self._spawn("kwok", kubeconfig, f"--config={BINARIES['kwok'].parent / 'stages.yaml'}",
                    "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                    "--node-lease-duration-seconds=40", f"--server-address=127.0.0.1:{free_port()}",
                    "--cidr=10.244.0.1/16", "--node-ip=127.0.0.1")

    def _wait(self, name: str, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        while time.monotonic() < deadline:
            for proc_name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{proc_name} exited with {process.returncode}:\n{self.log_tail(proc_name)}")
            try:
                if httpx.get(url, headers=headers, verify=False, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready within {timeout_s} s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-chars:]

    def _volume_directories(self) -> list[Path]:
        """The directories the host-path provisioner made on this machine for our volumes."""
        try:
            volumes = client.CoreV1Api(self.admin()).list_persistent_volume(_request_timeout=5).items
        except Exception:  # the API server never came up: it provisioned nothing
            return []
        paths = [Path(v.spec.host_path.path) for v in volumes if v.spec.host_path]
        return [p for p in paths if p.parent == Path("/tmp/hostpath_pv")]

    def stop(self) -> None:
        leftovers = self._volume_directories() if "kube-apiserver" in self.processes else []
        # the dependents first, etcd last
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for directory in leftovers:
            shutil.rmtree(directory, ignore_errors=True)

    # -- clients -----------------------------------------------------------------------------
    def write_kubeconfig(self, path: Path, token: str) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
        }))
        return path

    def api_client(self, token: str = ADMIN_TOKEN) -> client.ApiClient:
        configuration = client.Configuration(host=self.url)
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    def admin(self) -> client.ApiClient:
        return self.api_client()

    def token_of(self, namespace: str, service_account: str) -> str:
        """A token of the ServiceAccount, as its pod would have it mounted."""
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                                     expiration_seconds=3600))
        answer = client.CoreV1Api(self.admin()).create_namespaced_service_account_token(
            service_account, namespace, request)
        return answer.status.token

    # -- cluster contents ----------------------------------------------------------------
    def apply(self, objects: list[dict[str, Any]], manager: str = "test-setup") -> None:
        """Server-side apply of any manifests, as `kubectl apply --server-side` does."""
        api = dynamic.DynamicClient(self.admin())
        for obj in objects:
            resource = api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            api.server_side_apply(resource, body=obj, name=obj["metadata"]["name"],
                                  namespace=obj["metadata"].get("namespace"), field_manager=manager,
                                  force_conflicts=True)

    def add_nodes(self, count: int) -> None:
        """Nodes that kwok keeps Ready; roomy enough for any test's pods."""
        core = client.CoreV1Api(self.admin())
        capacity = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "1Ti"}
        for i in range(count):
            core.create_node(client.V1Node(
                metadata=client.V1ObjectMeta(name=f"kwok-node-{i}", annotations=dict(FAKE_NODE),
                                             labels={"type": "kwok", "kubernetes.io/hostname": f"kwok-node-{i}"}),
                status=client.V1NodeStatus(capacity=capacity, allocatable=capacity)))

    def _default_storage_class(self) -> None:
        self.set_default_storage_class(True)

    def set_default_storage_class(self, default: bool) -> None:
        self.apply([{
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: str(default).lower()}},
            "provisioner": "kubernetes.io/host-path", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
        }])

    def wait_for_deployment(self, namespace: str, name: str, timeout_s: float) -> None:
        apps = client.AppsV1Api(self.admin())
        deadline = time.monotonic() + timeout_s
        while not apps.read_namespaced_deployment(name, namespace).status.available_replicas:
            if time.monotonic() > deadline:
                raise RuntimeError(f"deployment {namespace}/{name} not available within {timeout_s:.0f} s:\n"
                                   f"{self.log_tail('kube-controller-manager')}\n{self.log_tail('kube-scheduler')}")
            time.sleep(0.1)

    def memory_mib(self) -> float:
        """Resident memory of every process of the control plane, in MiB."""
        total = 0
        for process in self.processes.values():
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024
