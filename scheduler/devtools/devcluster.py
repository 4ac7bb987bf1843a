"""A real, local Kubernetes control plane for tests, demos and benchmarks.

``DevCluster`` starts etcd, kube-apiserver (TLS, client certificates, RBAC, service-account
keys), the KWOK controller (fake nodes whose pods go Running at once and finish after the
duration in their ``kwok.wfsched.io/runtime`` annotation; pods that opt in report their
container resources as a kubelet does, so that ``pods/resize`` works on them, and end as
OOMKilled when ``memsim`` says so), and optionally metrics-server (fed by KWOK's
resource-usage emulation), kube-scheduler (the baseline for benchmarks),
kube-controller-manager (Jobs make pods) and Kueue (queueing and admission of Jobs), all on
127.0.0.1 with free ports. It writes an admin kubeconfig, waits for readiness, and stops
everything by process id. The binaries come from ``assets/build.sh``, which builds them from
published Go modules into a cache outside the repository.

State lives in one directory (``workdir``): credentials, etcd data, logs, the kubeconfig and
``state.json`` (ports and process ids), so ``wfsched dev-cluster down`` can stop a cluster that a
previous ``up`` started.

This is a development tool: it talks to the API server with a few plain HTTPS calls (readiness,
fake nodes, metrics-server registration) and never imports the ``kubernetes`` client.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from scheduler.devtools import httpjson
from scheduler.devtools import kueue as devcluster_kueue
from scheduler.devtools import pki as devcluster_pki

if TYPE_CHECKING:
    from scheduler.devtools import memsim

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
BUILD_SCRIPT = ASSETS_DIR / "build.sh"
KWOK_STAGES = ASSETS_DIR / "kwok-stages.yaml"

# Annotations understood by the ``wfsched-pod-finish`` KWOK stage.
RUNTIME_ANNOTATION = "kwok.wfsched.io/runtime"
EXIT_CODE_ANNOTATION = "kwok.wfsched.io/exit-code"
REASON_ANNOTATION = "kwok.wfsched.io/reason"
# Set by ``memsim.MemorySimulator``; the ``wfsched-pod-oom`` stage then ends the pod as OOMKilled.
OOM_KILL_ANNOTATION = "kwok.wfsched.io/oom-kill"
# A pod with this annotation (any value) or memsim's peak annotation is resizable: KWOK reports
# its container resources, so ``pods/resize`` is accepted while it runs.
RESIZABLE_ANNOTATION = "kwok.wfsched.io/resizable"
# Annotations read by KWOK's ``usage-from-annotation`` ClusterResourceUsage.
USAGE_CPU_ANNOTATION = "kwok.x-k8s.io/usage-cpu"
USAGE_MEMORY_ANNOTATION = "kwok.x-k8s.io/usage-memory"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"

_UPSTREAM_POD_READY = "stage/pod/fast/pod-ready.yaml"
# True for a resizable pod, as KWOK's stage selectors evaluate it (jq on the pod).
_RESIZABLE_SELECTOR_KEY = (
    f'.metadata.annotations // {{}} | has("{RESIZABLE_ANNOTATION}") '
    'or has("sim.wfsched.io/peak-memory-bytes")'
)

# Upstream KWOK stage files (copied next to the kwok binary by build.sh) that the controller
# needs: node lifecycle, pods Pending -> Running, deletion, and kubelet-like resource metrics.
_UPSTREAM_KWOK_CONFIG = (
    "stage/node/fast/node-initialize.yaml",
    "stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    _UPSTREAM_POD_READY,
    "stage/pod/fast/pod-delete.yaml",
    "metrics/resource/metrics-resource.yaml",
    "metrics/usage/usage-from-annotation.yaml",
)

# component -> binaries it provides
COMPONENT_BINARIES: Mapping[str, tuple[str, ...]] = {
    "etcd": ("etcd",),
    "kubernetes": ("kube-apiserver", "kube-scheduler"),
    "kwok": ("kwok",),
    "metrics-server": ("metrics-server",),
    "helm": ("helm",),
    "promtool": ("promtool",),
    "prometheus": ("prometheus",),
    # No binary: the Prometheus Operator's ServiceMonitor CRD, in the entry's crds/ directory.
    "prometheus-operator-crds": (),
    "kube-controller-manager": ("kube-controller-manager",),
    # Kueue's manager; its CRDs and webhook manifests are in the entry's crds/ and webhook/.
    "kueue": ("kueue",),
}

OPTIONAL_COMPONENTS = ("kube-controller-manager", "kueue")
"""Built only when named or needed (``--controller-manager``, ``--kueue``), as in build.sh."""

# Controllers kube-controller-manager runs on the local control plane: Jobs make pods
# ("job-controller"), owners' deletion removes dependants such as a Job's pods and Kueue's
# Workloads ("garbage-collector-controller"), finished Jobs with a TTL go away
# ("ttl-after-finished-controller"), a deleted namespace is emptied ("namespace-controller") and
# every namespace gets its default ServiceAccount ("serviceaccount-controller").
CONTROLLER_MANAGER_CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "namespace-controller",
    "serviceaccount-controller",
)


class DevClusterError(RuntimeError):
    """The local control plane could not be built, started or reached."""


class MissingBinariesError(DevClusterError):
    """A required binary is not in the cache and building was not allowed."""


def default_workdir() -> Path:
    """Return the directory ``wfsched dev-cluster`` uses when none is given."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "wfsched" / "dev-cluster"


def read_versions() -> dict[str, str]:
    """Return the pinned component versions from ``versions.env``."""
    versions: dict[str, str] = {}
    for line in (ASSETS_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def component_dir(component: str) -> Path:
    """Return the cache directory of one component (it exists only once built)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir", component],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def build_components(components: Sequence[str], *, output: IO[str] | None = None) -> None:
    """Build (or confirm cached) components with ``build.sh``, streaming its progress.

    Raises:
        DevClusterError: when the build fails.
    """
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *components],
        stdout=output or sys.stderr,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise DevClusterError(f"building {' '.join(components)} failed (exit {proc.returncode})")


def locate_binaries(components: Iterable[str], *, build_missing: bool) -> dict[str, Path]:
    """Return binary name -> path for the components, building missing ones if allowed.

    Raises:
        MissingBinariesError: a component is not cached and ``build_missing`` is false; the
            message names the command that builds it.
    """
    wanted = list(components)
    missing = [c for c in wanted if not (component_dir(c) / "manifest.json").is_file()]
    if missing and not build_missing:
        raise MissingBinariesError(
            f"control-plane components not built: {', '.join(missing)}; "
            f"run `bash {BUILD_SCRIPT} {' '.join(missing)}` or `wfsched dev-cluster build`"
        )
    if missing:
        build_components(missing)
    found: dict[str, Path] = {}
    for comp in wanted:
        directory = component_dir(comp)
        manifest = json.loads((directory / "manifest.json").read_text())
        for binary in COMPONENT_BINARIES[comp]:
            path = directory / "bin" / binary
            if binary not in manifest["binaries"] or not os.access(path, os.X_OK):
                raise MissingBinariesError(f"{path} is missing; rebuild with build.sh {comp}")
            found[binary] = path
        found[f"{comp}:root"] = directory
    return found


LARGE_CLUSTER_NODES = 1000
"""From this many fake nodes on, ``ClusterOptions.for_nodes`` picks the large-cluster settings."""


# The ports each component listens on. free_port only finds a port that was free a moment ago:
# another process (kube-apiserver's own connections to etcd take ephemeral ports) can take it
# before the component binds it; the component then exits with ``_PORT_TAKEN`` in its log and
# is started again on new ports.
_COMPONENT_PORTS: Mapping[str, tuple[str, ...]] = {
    "etcd": ("etcd", "etcd-peer"),
    "kube-apiserver": ("apiserver",),
    "kwok": ("kwok",),
    "metrics-server": ("metrics-server",),
    "kube-scheduler": ("scheduler",),
    "kube-controller-manager": ("controller-manager",),
    "kueue": ("kueue-webhook", "kueue-health", "kueue-metrics"),
}
_PORT_TAKEN = b"address already in use"
_START_ATTEMPTS = 3


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterOptions:
    """What to start besides etcd, kube-apiserver and KWOK, and how."""

    metrics_server: bool = True
    """Start metrics-server and register it as the ``metrics.k8s.io`` aggregated API."""
    kube_scheduler: bool = False
    """Start kube-scheduler (serves ``default-scheduler`` pods) as a baseline."""
    kube_scheduler_qps: int = 50
    """Client QPS of kube-scheduler (its own default is 50)."""
    kube_scheduler_burst: int = 100
    """Client burst of kube-scheduler (its own default is 100)."""
    max_requests_inflight: int = 3000
    """kube-apiserver ``--max-requests-inflight`` (raised for load tests)."""
    max_mutating_requests_inflight: int = 1500
    """kube-apiserver ``--max-mutating-requests-inflight``."""
    metric_resolution_s: int = 10
    """metrics-server scrape interval in seconds (its minimum is 10)."""
    controller_manager: bool = False
    """Start kube-controller-manager (``CONTROLLER_MANAGER_CONTROLLERS``: Jobs make pods)."""
    kueue: bool = False
    """Start Kueue's manager, with its CRDs and webhooks (see ``scheduler.devtools.kueue``)."""
    node_lease_duration_s: int = 40
    """KWOK's node Lease duration; it renews each Lease every quarter of it. 0 turns node
    Leases off (KWOK then manages every node without one): at 5,000 nodes the 40 s default
    costs 500 Lease updates a second, and nothing here (no node lifecycle controller) reads
    them."""
    kwok_parallelism: int = 4
    """Workers of each KWOK stage player (pods, nodes) and of its Lease renewal (KWOK's
    default is 4)."""

    @classmethod
    def for_nodes(cls, nodes: int, **overrides: Any) -> ClusterOptions:
        """Options sized for ``nodes`` fake nodes, ``overrides`` taking precedence.

        From ``LARGE_CLUSTER_NODES`` on: node Leases off and 16 KWOK workers per player
        (docs/control-plane.md, "Large clusters").
        """
        sized: dict[str, Any] = {}
        if nodes >= LARGE_CLUSTER_NODES:
            sized = {"node_lease_duration_s": 0, "kwok_parallelism": 16}
        return cls(**{**sized, **overrides})


GANG_APISERVER_FLAGS: tuple[str, ...] = (
    "--feature-gates=GenericWorkload=true,GangScheduling=true",
    "--runtime-config=scheduling.k8s.io/v1alpha2=true",
)
"""Serve the 1.36 gang API: ``PodGroup`` (v1alpha2) and the pods' ``spec.schedulingGroup``."""
GANG_SCHEDULER_FLAGS: tuple[str, ...] = (
    "--feature-gates=GenericWorkload=true,GangScheduling=true",
)
"""kube-scheduler's GangScheduling plugin (all or nothing per PodGroup), the baseline for gangs."""


@dataclass(slots=True)
class _Process:
    name: str
    argv: list[str]
    pid: int = 0

    def alive(self) -> bool:
        if self.pid <= 0:
            return False
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            return False
        return cmdline.decode(errors="replace") == self.argv[0]


@dataclass(slots=True)
class _State:
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, _Process] = field(default_factory=dict)


class AdminClient(httpjson.JsonHttp):
    """HTTPS client with the cluster's admin certificate (JSON in, JSON out)."""

    def __init__(self, server_port: int, pki: devcluster_pki.PkiPaths) -> None:
        context = ssl.create_default_context(cafile=str(pki.ca_crt))
        context.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))
        super().__init__(server_port, context=context)

    def apply(self, path: str, body: Mapping[str, Any]) -> None:
        """Create an object, or replace it when it already exists (retrying update races)."""
        for _ in range(5):
            status, reply = self._apply_once(path, body)
            if status != 409:
                break
        if status >= 300:
            raise DevClusterError(f"applying {path}: HTTP {status}: {reply}")

    def _apply_once(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        status, reply = self.request("POST", path, body)
        if status == 409:
            name = body["metadata"]["name"]
            status, current = self.request("GET", f"{path}/{name}")
            if status == 200:
                merged = dict(body)
                merged["metadata"] = dict(body["metadata"])
                merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                status, reply = self.request("PUT", f"{path}/{name}", merged)
        return status, reply


def fake_node(
    name: str,
    *,
    cpu: str,
    memory: str,
    pods: int = 110,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
    extended: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return a Node object that KWOK manages, with real allocatable resources."""
    resources = {"cpu": cpu, "memory": memory, "pods": str(pods), **(extended or {})}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                FAKE_NODE_ANNOTATION: "fake",
                "node.alpha.kubernetes.io/ttl": "0",
                "metrics.k8s.io/resource-metrics-path": f"/metrics/nodes/{name}/metrics/resource",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **(labels or {}),
            },
        },
        "spec": {"taints": [dict(t) for t in taints]} if taints else {},
        "status": {"allocatable": resources, "capacity": resources},
    }


class DevCluster:
    """One local control plane rooted at ``workdir``.

    Lifecycle: ``start()`` → use ``kubeconfig`` → ``stop()``. ``stop_component`` and
    ``start_component`` restart single processes (fault tests). ``attach(workdir)`` returns a
    handle for a cluster started by another process (``wfsched dev-cluster down``).
    """

    def __init__(self, workdir: Path, options: ClusterOptions | None = None) -> None:
        self.workdir = workdir.resolve()
        self.options = options or ClusterOptions()
        self.pki = devcluster_pki.PkiPaths(root=self.workdir / "pki")
        self._state = _State()
        self._binaries: dict[str, Path] = {}
        self._metrics_registered = False

    # --- paths and handles ---------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig of this cluster."""
        return self.workdir / "admin.kubeconfig"

    @property
    def api_port(self) -> int:
        """kube-apiserver's secure port."""
        return self._state.ports["apiserver"]

    @property
    def server(self) -> str:
        """kube-apiserver's URL."""
        return f"https://127.0.0.1:{self.api_port}"

    def admin(self) -> AdminClient:
        """Return an admin HTTPS client for this cluster."""
        return AdminClient(self.api_port, self.pki)

    def memory_simulator(self, **options: Any) -> memsim.MemorySimulator:
        """A (not yet started) fake kubelet memory model for this cluster's pods.

        ``options`` go to ``memsim.MemorySimulator`` (``namespace``, ``usage_interval_s``).
        Imported here: the simulator uses wfsched's API client, the rest of this module does not.
        """
        from scheduler.devtools import memsim as memory_model

        return memory_model.MemorySimulator(self.kubeconfig, **options)

    def etcd(self) -> httpjson.JsonHttp:
        """Return a client of etcd's JSON gateway (``/v3/kv/...``), behind the API server."""
        return httpjson.JsonHttp(self._state.ports["etcd"])

    def log_path(self, component: str) -> Path:
        """Return the log file of one component."""
        return self.workdir / "logs" / f"{component}.log"

    def pid(self, component: str) -> int:
        """Return the process id of a running component (0 when it is not running)."""
        proc = self._state.processes.get(component)
        return proc.pid if proc and proc.alive() else 0

    # --- start and stop ------------------------------------------------------------------

    def start(self, *, build_missing: bool = True, timeout_s: float = 120) -> None:
        """Start every component and wait until the cluster answers.

        Raises:
            MissingBinariesError: binaries are missing and ``build_missing`` is false.
            DevClusterError: a component exited or did not become ready in time; the message
                includes the tail of its log.
        """
        self._binaries = locate_binaries(self._components(), build_missing=build_missing)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        devcluster_pki.ensure_pki(self.pki.root)
        for name in ("etcd", "etcd-peer", "apiserver", "kwok", "metrics-server", "scheduler"):
            self._state.ports.setdefault(name, free_port())
        for name in ("controller-manager", "kueue-webhook", "kueue-health", "kueue-metrics"):
            self._state.ports.setdefault(name, free_port())
        self.write_kubeconfig(self.kubeconfig)
        self._write_kwok_config()
        deadline = time.monotonic() + timeout_s
        try:
            self._start_on_free_ports("etcd", deadline=deadline)
            self._start_on_free_ports("kube-apiserver", deadline=deadline)
            self._start_on_free_ports("kwok", deadline=deadline)
            if self.options.metrics_server:
                self._start_on_free_ports("metrics-server", deadline=deadline)
            if self.options.kube_scheduler:
                self._start_on_free_ports("kube-scheduler", deadline=deadline)
            if self.options.controller_manager:
                self._start_on_free_ports("kube-controller-manager", deadline=deadline)
            if self.options.kueue:
                self._install_kueue_crds(deadline)
                self._start_on_free_ports("kueue", deadline=deadline)
                self._register_kueue_webhooks()
        except BaseException:
            self.stop()
            raise
        self._save_state()

    def _start_on_free_ports(self, name: str, *, deadline: float) -> None:
        """``start_component``, started again on new ports when one of its ports was taken.

        Only for a cluster being started: nothing but the kubeconfig (rewritten here) was told
        of a component's ports before it runs. At most ``_START_ATTEMPTS`` starts.

        Raises:
            DevClusterError: as ``start_component``, once the attempts are spent or for any
                other failure.
        """
        for attempt in range(1, _START_ATTEMPTS + 1):
            log_path = self.log_path(name)
            logged_before = log_path.stat().st_size if log_path.exists() else 0
            try:
                self.start_component(name, deadline=deadline)
                return
            except DevClusterError:
                with log_path.open("rb") as log:
                    log.seek(logged_before)
                    port_taken = _PORT_TAKEN in log.read()
                if not port_taken or attempt == _START_ATTEMPTS:
                    raise
            for port in _COMPONENT_PORTS[name]:
                self._state.ports[port] = free_port()
            if name == "kube-apiserver":
                self.write_kubeconfig(self.kubeconfig)
            print(f"{name}: a port was taken before it started; starting it again", file=sys.stderr)

    def stop(self) -> None:
        """Stop every component (newest first); safe to call more than once."""
        for name in reversed(list(self._state.processes)):
            self.stop_component(name)
        self._save_state()

    def start_component(self, name: str, *, deadline: float | None = None) -> None:
        """Start one component and wait until it is ready.

        Raises:
            DevClusterError: it exited or was not ready before ``deadline``.
        """
        if not self._binaries:
            self._binaries = locate_binaries(self._components(), build_missing=False)
        argv, ready = self._command(name)
        log = self.log_path(name).open("ab")
        with log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )
        self._state.processes[name] = _Process(name=name, argv=argv, pid=proc.pid)
        self._save_state()
        limit = deadline if deadline is not None else time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise DevClusterError(f"{name} exited with {proc.returncode}:\n{self._tail(name)}")
            with contextlib.suppress(OSError, http.client.HTTPException, ssl.SSLError):
                if ready():
                    return
            if time.monotonic() > limit:
                raise DevClusterError(f"{name} not ready in time:\n{self._tail(name)}")
            time.sleep(0.2)

    def stop_component(self, name: str, *, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop one component by process id (SIGKILL after 10 s); no-op when not running."""
        proc = self._state.processes.get(name)
        if proc is None or not proc.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 10
        while proc.alive() and time.monotonic() < deadline:
            _reap(proc.pid)
            time.sleep(0.05)
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            while proc.alive():
                _reap(proc.pid)
                time.sleep(0.05)
        _reap(proc.pid)

    @classmethod
    def attach(cls, workdir: Path) -> DevCluster:
        """Return a handle on the cluster whose ``state.json`` is in ``workdir``.

        Raises:
            DevClusterError: there is no state file.
        """
        state_file = workdir / "state.json"
        if not state_file.is_file():
            raise DevClusterError(f"no dev cluster state in {workdir}")
        raw = json.loads(state_file.read_text())
        cluster = cls(workdir, ClusterOptions(**raw.get("options", {})))
        cluster._state.ports = {k: int(v) for k, v in raw["ports"].items()}
        cluster._state.processes = {
            name: _Process(name=name, argv=list(p["argv"]), pid=int(p["pid"]))
            for name, p in raw["processes"].items()
        }
        return cluster

    def running_components(self) -> dict[str, int]:
        """Return component name -> pid for every component that is alive."""
        return {n: p.pid for n, p in self._state.processes.items() if p.alive()}

    # --- objects -------------------------------------------------------------------------

    def create_nodes(
        self,
        count: int,
        *,
        cpu: str = "8",
        memory: str = "32Gi",
        pods: int = 110,
        prefix: str = "kwok-node-",
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
        wait_ready_s: float = 60,
    ) -> list[str]:
        """Create ``count`` fake nodes managed by KWOK and wait until all are Ready.

        Nodes are created by up to 32 threads; the wait is at least ``wait_ready_s`` and
        grows by 50 ms a node (5,000 nodes: 310 s) for a loaded machine.

        Returns:
            The node names, ``<prefix>0`` .. ``<prefix><count-1>``.
        """
        admin = self.admin()
        names = [f"{prefix}{i}" for i in range(count)]

        def create(name: str) -> None:
            body = fake_node(name, cpu=cpu, memory=memory, pods=pods, labels=labels, taints=taints)
            admin.apply("/api/v1/nodes", body)

        with ThreadPoolExecutor(max_workers=min(32, max(8, count // 100))) as pool:
            list(pool.map(create, names))
        self.wait_nodes_ready(names, timeout_s=max(wait_ready_s, 60 + count * 0.05))
        return names

    def wait_nodes_ready(self, names: Iterable[str], *, timeout_s: float = 60) -> None:
        """Wait until every named node reports ``Ready=True``.

        Raises:
            DevClusterError: some nodes are not Ready in time.
        """
        wanted = set(names)
        deadline = time.monotonic() + timeout_s
        admin = self.admin()
        while True:
            status, body = admin.request("GET", "/api/v1/nodes")
            ready = set()
            if status == 200:
                for node in body["items"]:
                    for cond in node.get("status", {}).get("conditions", []):
                        if cond["type"] == "Ready" and cond["status"] == "True":
                            ready.add(node["metadata"]["name"])
            if wanted <= ready:
                return
            if time.monotonic() > deadline:
                raise DevClusterError(f"nodes not Ready in time: {sorted(wanted - ready)[:10]}")
            time.sleep(0.5 if len(wanted) < LARGE_CLUSTER_NODES else 2.0)

    # --- internals -----------------------------------------------------------------------

    def _components(self) -> list[str]:
        """The cached components this cluster's options need."""
        components = ["etcd", "kubernetes", "kwok"]
        if self.options.metrics_server:
            components.append("metrics-server")
        if self.options.controller_manager:
            components.append("kube-controller-manager")
        if self.options.kueue:
            components.append("kueue")
        return components

    def _command(self, name: str) -> tuple[list[str], Callable[[], bool]]:
        ports, pki, d = self._state.ports, self.pki, self.workdir
        bins = self._binaries
        kubeconfig = str(self.kubeconfig)
        if name == "etcd":
            return [
                str(bins["etcd"]),
                "--data-dir",
                str(d / "etcd"),
                "--name",
                "wfsched-dev",
                "--listen-client-urls",
                f"http://127.0.0.1:{ports['etcd']}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{ports['etcd']}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{ports['etcd-peer']}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{ports['etcd-peer']}",
                "--initial-cluster",
                f"wfsched-dev=http://127.0.0.1:{ports['etcd-peer']}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes",
                str(8 << 30),
                "--log-level",
                "warn",
            ], lambda: _http_ok(f"http://127.0.0.1:{ports['etcd']}/health")
        if name == "kube-apiserver":
            return [
                str(bins["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki.serving_crt}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_crt}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=Node,RBAC",
                "--endpoint-reconciler-type=none",
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--allow-privileged=true",
                f"--max-requests-inflight={self.options.max_requests_inflight}",
                f"--max-mutating-requests-inflight={self.options.max_mutating_requests_inflight}",
                f"--requestheader-client-ca-file={pki.front_proxy_ca_crt}",
                f"--proxy-client-cert-file={pki.front_proxy_client_crt}",
                f"--proxy-client-key-file={pki.front_proxy_client_key}",
                f"--requestheader-allowed-names={devcluster_pki.FRONT_PROXY_CLIENT_CN}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--enable-aggregator-routing=false",
                *GANG_APISERVER_FLAGS,
            ], self._apiserver_ready
        if name == "kwok":
            return [
                str(bins["kwok"]),
                f"--kubeconfig={kubeconfig}",
                f"--config={d / 'kwok.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=127.0.0.1",
                "--node-name=localhost",
                f"--node-port={ports['kwok']}",
                f"--server-address=127.0.0.1:{ports['kwok']}",
                f"--node-lease-duration-seconds={self.options.node_lease_duration_s}",
                "--v=WARN",
            ], lambda: _http_ok(f"http://127.0.0.1:{ports['kwok']}/healthz")
        if name == "metrics-server":
            return [
                str(bins["metrics-server"]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['metrics-server']}",
                f"--cert-dir={pki.root / 'metrics-server'}",
                "--kubelet-insecure-tls",
                "--kubelet-use-node-status-port",
                "--kubelet-preferred-address-types=Hostname,InternalIP,ExternalIP",
                f"--metric-resolution={self.options.metric_resolution_s}s",
                "--kubelet-request-timeout=5s",
            ], self._metrics_server_ready
        if name == "kube-scheduler":
            config = d / "kube-scheduler.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "kubescheduler.config.k8s.io/v1",
                        "kind": "KubeSchedulerConfiguration",
                        "clientConnection": {
                            "kubeconfig": kubeconfig,
                            "qps": self.options.kube_scheduler_qps,
                            "burst": self.options.kube_scheduler_burst,
                        },
                        "leaderElection": {"leaderElect": False},
                    }
                )
            )
            return [
                str(bins["kube-scheduler"]),
                f"--config={config}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['scheduler']}",
                *GANG_SCHEDULER_FLAGS,
            ], lambda: _https_ok(f"https://127.0.0.1:{ports['scheduler']}/healthz")
        if name == "kube-controller-manager":
            return [
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['controller-manager']}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                f"--controllers={','.join(CONTROLLER_MANAGER_CONTROLLERS)}",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
            ], lambda: _https_ok(f"https://127.0.0.1:{ports['controller-manager']}/healthz")
        if name == "kueue":
            return self._kueue_command()
        raise DevClusterError(f"unknown component {name}")

    def _kueue_command(self) -> tuple[list[str], Callable[[], bool]]:
        """Kueue's argv (after writing its configuration and certificates) and readiness."""
        ports = self._state.ports
        cert_dir = self.pki.root / "kueue-webhook"
        cert_dir.mkdir(parents=True, exist_ok=True)
        for src, dst in ((self.pki.serving_crt, "tls.crt"), (self.pki.serving_key, "tls.key")):
            (cert_dir / dst).write_bytes(src.read_bytes())
            (cert_dir / dst).chmod(0o600)
        self._ensure_kueue_metrics_cert()
        config = self.workdir / "kueue.yaml"
        config.write_text(
            yaml.safe_dump(
                devcluster_kueue.manager_configuration(
                    webhook_port=ports["kueue-webhook"],
                    cert_dir=cert_dir,
                    health_port=ports["kueue-health"],
                    metrics_port=ports["kueue-metrics"],
                )
            )
        )
        argv = [
            str(self._binaries["kueue"]),
            f"--config={config}",
            f"--kubeconfig={self.kubeconfig}",
            f"--feature-gates={devcluster_kueue.FEATURE_GATES}",
            "--zap-log-level=info",
        ]

        def ready() -> bool:
            return _http_ok(f"http://127.0.0.1:{ports['kueue-health']}/readyz") and _tls_listening(
                ports["kueue-webhook"]
            )

        return argv, ready

    def _ensure_kueue_metrics_cert(self) -> None:
        """Put a serving certificate where Kueue looks for its metrics certificate.

        Raises:
            DevClusterError: the fixed directory is missing the files and cannot be written.
        """
        target = devcluster_kueue.METRICS_CERT_DIR
        if (target / "tls.crt").is_file() and (target / "tls.key").is_file():
            return
        try:
            target.mkdir(parents=True, exist_ok=True)
            for src, dst in ((self.pki.serving_crt, "tls.crt"), (self.pki.serving_key, "tls.key")):
                scratch = target / f".{dst}.{os.getpid()}"
                scratch.write_bytes(src.read_bytes())
                scratch.chmod(0o600)
                scratch.replace(target / dst)
        except OSError as exc:
            raise DevClusterError(
                f"Kueue reads its metrics certificate from {target} (fixed in Kueue); "
                f"it cannot be written here ({exc}): create tls.crt and tls.key there"
            ) from exc

    def _install_kueue_crds(self, deadline: float) -> None:
        """Create Kueue's namespace and CRDs (conversion through its webhook); wait Established.

        Raises:
            DevClusterError: a CRD is not Established before ``deadline``.
        """
        admin = self.admin()
        admin.apply(
            "/api/v1/namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": devcluster_kueue.NAMESPACE},
            },
        )
        root = self._binaries["kueue:root"]
        crds = devcluster_kueue.crd_documents(
            (root / "crds").glob("*.yaml"),
            conversion_url=f"https://127.0.0.1:{self._state.ports['kueue-webhook']}/convert",
            ca_bundle_b64=devcluster_kueue.ca_bundle(self.pki.ca_crt),
        )
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for crd in crds:
            admin.apply(path, crd)
        pending = {crd["metadata"]["name"] for crd in crds}
        while pending:
            for name in sorted(pending):
                status, body = admin.request("GET", f"{path}/{name}")
                conditions = (
                    ((body.get("status") or {}).get("conditions") or []) if status == 200 else []
                )
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise DevClusterError(f"Kueue CRDs not Established in time: {sorted(pending)}")
            time.sleep(0.2)

    def _register_kueue_webhooks(self) -> None:
        """Point Kueue's admission webhooks at the manager on 127.0.0.1."""
        admin = self.admin()
        manifests = (self._binaries["kueue:root"] / "webhook" / "manifests.yaml").read_text()
        configs = devcluster_kueue.webhook_configurations(
            manifests,
            base_url=f"https://127.0.0.1:{self._state.ports['kueue-webhook']}",
            ca_bundle_b64=devcluster_kueue.ca_bundle(self.pki.ca_crt),
        )
        for config in configs:
            plural = (
                "mutatingwebhookconfigurations"
                if config["kind"] == "MutatingWebhookConfiguration"
                else "validatingwebhookconfigurations"
            )
            admin.apply(f"/apis/admissionregistration.k8s.io/v1/{plural}", config)

    def _apiserver_ready(self) -> bool:
        admin = self.admin()
        status, _ = admin.request("GET", "/readyz", timeout=5)
        if status != 200:
            return False
        status, _ = admin.request("GET", "/api/v1/namespaces/default", timeout=5)
        return status == 200

    def _metrics_server_ready(self) -> bool:
        admin = self.admin()
        if not self._metrics_registered:
            self._register_metrics_api(admin)
            self._metrics_registered = True
        status, body = admin.request(
            "GET", "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io"
        )
        if status != 200:
            return False
        conditions = body.get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    def _register_metrics_api(self, admin: AdminClient) -> None:
        """Point the ``v1beta1.metrics.k8s.io`` APIService at this cluster's metrics-server."""
        admin.apply(
            "/api/v1/namespaces/kube-system/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "metrics-server", "namespace": "kube-system"},
                "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
            },
        )
        admin.apply(
            "/apis/apiregistration.k8s.io/v1/apiservices",
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                    "service": {
                        "namespace": "kube-system",
                        "name": "metrics-server",
                        "port": self._state.ports["metrics-server"],
                    },
                },
            },
        )

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """Write a kubeconfig for this cluster to ``path`` (mode 0600) and return ``path``.

        The user is the admin (client certificate) unless ``token`` is given: then it is
        whoever that bearer token authenticates (a ServiceAccount's, a rejected one).
        """
        user: dict[str, str] = {
            "client-certificate": str(self.pki.admin_crt),
            "client-key": str(self.pki.admin_key),
        }
        if token is not None:
            user = {"token": token}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "wfsched-dev",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki.ca_crt),
                    },
                }
            ],
            "users": [{"name": "admin" if token is None else "token", "user": user}],
            "contexts": [
                {
                    "name": "wfsched-dev",
                    "context": {
                        "cluster": "wfsched-dev",
                        "user": "admin" if token is None else "token",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "wfsched-dev",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _write_kwok_config(self) -> None:
        kustomize = self._binaries["kwok:root"] / "kustomize"
        documents = []
        for rel in _UPSTREAM_KWOK_CONFIG:
            text = (kustomize / rel).read_text()
            documents.append(_without_resizable_pods(text) if rel == _UPSTREAM_POD_READY else text)
        documents.append(KWOK_STAGES.read_text())
        workers = self.options.kwok_parallelism
        options = {
            "podPlayStageParallelism": workers,
            "nodePlayStageParallelism": workers,
            "nodeLeaseParallelism": workers,
        }
        documents.append(
            yaml.safe_dump(
                {
                    "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
                    "kind": "KwokConfiguration",
                    "options": options,
                }
            )
        )
        (self.workdir / "kwok.yaml").write_text("\n---\n".join(documents))

    def _save_state(self) -> None:
        state = {
            "options": {k: getattr(self.options, k) for k in ClusterOptions.__dataclass_fields__},
            "ports": self._state.ports,
            "processes": {
                n: {"argv": p.argv, "pid": p.pid} for n, p in self._state.processes.items()
            },
            "kubeconfig": str(self.kubeconfig),
        }
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2))

    def _tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _http_ok(url: str) -> bool:
    host, _, rest = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=2)
    try:
        conn.request("GET", "/" + rest)
        return conn.getresponse().status == 200
    finally:
        conn.close()


def _tls_listening(port: int) -> bool:
    """Whether something completes a TLS handshake on 127.0.0.1:``port``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=2) as sock,
        context.wrap_socket(sock),
    ):
        return True


def _https_ok(url: str) -> bool:
    host, _, rest = url.removeprefix("https://").partition("/")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, timeout=2, context=context)
    try:
        conn.request("GET", "/" + rest)
        return conn.getresponse().status == 200
    finally:
        conn.close()


def metric_sample(exposition: str, sample: str, *, default: float = math.nan) -> float:
    """The value of one sample of a Prometheus text exposition, ``default`` when absent.

    ``sample`` is the line's start as exposed: ``wfsched_workflow_runs`` or
    ``wfsched_schedule_attempts_total{result="scheduled"}``.
    """
    for line in exposition.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[1])
    return default


def process_memory_bytes(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from ``/proc/<pid>/status`` in bytes (0 when absent).

    ``VmRSS`` is the resident set now, ``VmHWM`` its peak so far.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def daemon_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``base`` (default: this process's environment) for a ``wfsched run`` child.

    ``WFSCHED_*`` variables that are not configuration overrides are left out: the daemon reads
    every ``WFSCHED_*`` variable as a setting and refuses to start on an unknown one, so a
    variable meant for something else (a test switch, a report path) would stop it.
    ``WFSCHED_CONFIG``, ``WFSCHED_API_TOKEN`` and every real override are kept.
    """
    from scheduler.runtime import settings as settings_mod

    known = {"WFSCHED_CONFIG", "WFSCHED_API_TOKEN"}
    known.update(f"WFSCHED_{f.name.upper()}" for f in fields(settings_mod.Settings))
    known.update(f"WFSCHED_LEASE__{f.name.upper()}" for f in fields(settings_mod.LeaseSettings))
    known.update(f"WFSCHED_GANGS__{f.name.upper()}" for f in fields(settings_mod.GangSettings))
    env = dict(os.environ if base is None else base)
    return {k: v for k, v in env.items() if not k.startswith("WFSCHED_") or k in known}


class LocalDaemon:
    """``wfsched run`` as a child process with a generated configuration (demos, tests).

    ``settings`` are configuration keys (see ``scheduler.runtime.settings.Settings``); the
    health port is chosen free and the REST API is off unless ``rest_port`` is given. The child gets
    ``env`` if set, else ``daemon_environment()`` at the time of ``start``.
    """

    def __init__(self, kubeconfig: Path | str, workdir: Path, **settings: Any) -> None:
        self.kubeconfig = str(kubeconfig)
        self.workdir = workdir
        self.port = free_port()
        config = {
            "health_port": self.port,
            "bind_address": "127.0.0.1",
            "rest_port": 0,
            "log_format": "json",
            "metrics_poll_s": 0,
            **settings,
        }
        self.config_path = workdir / f"wfsched-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"wfsched-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] | None = None

    def start(self, *, wait_ready_s: float = 30) -> None:
        """Start the process and wait for ``/readyz``.

        Raises:
            DevClusterError: the daemon exited or did not become ready in time.
        """
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scheduler",
                    "run",
                    "--config",
                    str(self.config_path),
                    "--kubeconfig",
                    self.kubeconfig,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env if self.env is not None else daemon_environment(),
            )
        deadline = time.monotonic() + wait_ready_s
        while True:
            if self.proc.poll() is not None:
                raise DevClusterError(
                    f"wfsched exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if _http_ok(f"http://127.0.0.1:{self.port}/readyz"):
                    return
            if time.monotonic() > deadline:
                raise DevClusterError(f"wfsched not ready in time:\n{self.log_tail()}")
            time.sleep(0.2)

    def get(self, path: str) -> str:
        """GET a path of the health/metrics server and return the body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def metrics(self) -> str:
        """The Prometheus exposition of the daemon."""
        return self.get("/metrics")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the daemon's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the process (crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM, wait up to 20 s, then SIGKILL; return the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def _without_resizable_pods(stage_text: str) -> str:
    """The upstream pod-ready stage, made to leave resizable pods out.

    ``wfsched-pod-ready-resizable`` (kwok-stages.yaml) starts those: it reports their container
    resources and the start to the millisecond in the same status write. KWOK picks at random
    among the stages that match a pod, so the two selectors must exclude each other.
    """
    stage = yaml.safe_load(stage_text)
    stage["spec"]["selector"]["matchExpressions"].append(
        {"key": _RESIZABLE_SELECTOR_KEY, "operator": "In", "values": ["false"]}
    )
    return str(yaml.safe_dump(stage, sort_keys=False))
