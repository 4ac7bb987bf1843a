"""Every panel of the shipped Grafana dashboard shows data from a real run.

A real Prometheus server (built by ``build.sh`` from the same Go module as promtool) scrapes a
real daemon every second while ``wfsched replay``'s driver runs a short workflow through it on
the chart tier's control plane. The daemon predicts memory (``mean-offset=none``) and the task
pods report their peaks (``wfsched.io/peak-memory-bytes``, as a wrapper would), so later tasks
of a step are resized before binding and the prediction error is observed. Afterwards every
panel query and template variable of ``charts/wfsched/dashboards/wfsched.json`` is evaluated
over the run: each must return at least one series with at least one finite value.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.devtools import devcluster, replay
from scheduler.kube import client as kube_client
from scheduler.kube import keys

from .chart_helpers import CHART, Kube

pytestmark = pytest.mark.integration

DASHBOARD = CHART / "dashboards" / "wfsched.json"
MIB = 1 << 20
NODE_LABEL = "wfsched.test/dashboard"


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    """The Prometheus server; skipped where build.sh has not built it (stage 2 always does)."""
    try:
        return devcluster.locate_binaries(["prometheus"], build_missing=False)["prometheus"]
    except devcluster.MissingBinariesError as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def running_prometheus(
    binary: Path, workdir: Path, target: str, labels: Mapping[str, str]
) -> Iterator[str]:
    """Run Prometheus scraping ``target`` every second; yield its base URL."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "wfsched",
                "static_configs": [{"targets": [target], "labels": dict(labels)}],
            }
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = devcluster.free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(binary),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _api(url: str, path: str, params: Mapping[str, str]) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


class PeakReportingApi:
    """The replay's pod API, adding what a task wrapper reports and pinning the test's node."""

    def __init__(self, api: kube_client.KubeClient, peaks: Mapping[str, int]) -> None:
        self._api = api
        self._peaks = peaks

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> object:
        pod = json.loads(json.dumps(manifest))
        step = pod["metadata"]["labels"][keys.STEP_LABEL]
        pod["metadata"]["annotations"][keys.PEAK_MEMORY_ANNOTATION] = str(self._peaks[step])
        pod["spec"]["nodeSelector"] = {NODE_LABEL: "yes"}
        return self._api.create_pod(namespace, pod)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return self._api.list_pods(namespace, label_selector)


def _plan(run: str) -> replay.ReplayPlan:
    """Twelve ``align`` tasks (1 CPU, 1 GiB asked, ~300 MiB used) on 2 CPU, then a ``merge``.

    Two run at a time, so most ``align`` tasks are placed after earlier ones reported peaks.
    """
    aligns = tuple(
        replay.ReplayTask(
            id=f"align-{i}",
            pod_name=f"{run}-align-{i}",
            step="align",
            parents=(),
            runtime_s=1.0,
            cpu_millis=1000,
            memory_bytes=1024 * MIB,
            input_size=1000 + i,
        )
        for i in range(12)
    )
    merge = replay.ReplayTask(
        id="merge",
        pod_name=f"{run}-merge",
        step="merge",
        parents=tuple(t.id for t in aligns),
        runtime_s=1.0,
        cpu_millis=1000,
        memory_bytes=512 * MIB,
        input_size=12_000,
    )
    return replay.ReplayPlan(
        workflow="dashboard-check",
        run_id=run,
        tasks=(*aligns, merge),
        scheduler_name="workflow-scheduler",
    )


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    found: list[tuple[str, str]] = []
    for panel in dashboard["panels"]:
        for inner in (panel, *panel.get("panels", [])):
            for target in inner.get("targets", []):
                found.append((f"panel {inner['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"variable {variable['name']}", variable["query"]["query"]))
    return found


def test_every_dashboard_panel_returns_series_from_a_real_run(
    prometheus_binary: Path,
    kube: Kube,
    chart_cluster: devcluster.DevCluster,
    tmp_path: Path,
) -> None:
    namespace = kube.create_namespace("dash")
    chart_cluster.create_nodes(
        1, cpu="2", memory="8Gi", prefix=f"dash-{uuid.uuid4().hex[:4]}-", labels={NODE_LABEL: "yes"}
    )
    daemon = devcluster.LocalDaemon(
        chart_cluster.kubeconfig,
        tmp_path,
        namespaces=[namespace],
        predictor="mean-offset=none",
        lease={"enabled": False, "namespace": namespace},
        log_level="warning",
    )
    labels = {"namespace": namespace, "pod": "wfsched-0"}
    api = kube_client.KubeClient.connect(
        str(chart_cluster.kubeconfig), qps=50, burst=100, pool_size=4
    )
    daemon.start(wait_ready_s=60)
    try:
        with running_prometheus(
            prometheus_binary, tmp_path, f"127.0.0.1:{daemon.port}", labels
        ) as url:
            started = time.time()
            plan = _plan(f"dash-{uuid.uuid4().hex[:6]}")
            peaks = {"align": 300 * MIB, "merge": 200 * MIB}
            progress = replay.Replayer(plan, PeakReportingApi(api, peaks), namespace=namespace).run(
                timeout_s=180
            )
            assert progress.succeeded == len(plan.tasks)
            time.sleep(4)  # a few more scrapes after the last task
            ended = time.time()
            metrics = daemon.metrics()
            assert 'wfsched_resize_requests_total{result="applied"}' in metrics
            problems = _empty_queries(url, namespace, started, ended)
    finally:
        api.close()
        daemon.stop()
    assert not problems, "\n".join(problems) + "\n" + daemon.log_tail()


def _empty_queries(url: str, namespace: str, started: float, ended: float) -> list[str]:
    """Dashboard expressions that return no series, or only non-finite values, over the run."""
    problems: list[str] = []
    for where, expr in _expressions():
        text = (
            expr.replace("$__rate_interval", "5s")
            .replace("$namespace", namespace)
            .replace("$job", "wfsched")
        )
        variable = text.startswith("label_values(")
        if variable:
            selector, label = text[len("label_values(") : -1].rsplit(",", 1)
            values = _api(url, f"/api/v1/label/{label.strip()}/values", {"match[]": selector})
            if not values:
                problems.append(f"{where}: no values for {text}")
            continue
        data = _api(
            url,
            "/api/v1/query_range",
            {"query": text, "start": f"{started:.3f}", "end": f"{ended:.3f}", "step": "1"},
        )
        series = data["result"]
        finite = [s for s in series if any(math.isfinite(float(value)) for _, value in s["values"])]
        if not finite:
            problems.append(f"{where}: {len(series)} series, none with a finite value: {text}")
    return problems
