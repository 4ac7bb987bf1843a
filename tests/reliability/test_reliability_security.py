"""Secrets stay out of logs, metrics, the command line and configuration errors.

What ``tests/chart`` already covers is not repeated here: RBAC (SubjectAccessReviews and
impersonation), non-root, read-only root file system, the restricted Pod Security Standard,
the token Secret wiring. Added here:

* the daemon runs with a service-account **bearer token** in its kubeconfig and a REST API
  token in ``WFSCHED_API_TOKEN``, at log level ``debug``, schedules pods, serves REST requests
  with a wrong, a missing and the right token (and one with the token in the query string),
  and loses its RBAC permissions midway (403s get logged): neither secret may appear in its
  log, its ``/metrics``, or its command line;
* a kubeconfig with a **rejected token** (401): the daemon never becomes ready, and its log
  still does not echo the token;
* configuration errors (``load_settings`` and ``wfsched run --check-config``) never echo the
  value of a secret-looking key.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import (
    CapacityMonitor,
    alive,
    count_bound,
    pod_manifest,
    record,
    start_daemon,
    wait_until,
)

from scheduler.devtools import devcluster, httpjson
from scheduler.runtime import settings as settings_mod

API_SECRET = "wfsched-api-secret-7d1c0f9e2b5a4c38"
WRONG_SECRET = "wfsched-wrong-secret-44aa0b1c9e7f"


def _rest(port: int, path: str, token: str | None = None) -> int:
    headers = [("Authorization", f"Bearer {token}")] if token else []
    return httpjson.JsonHttp(port).request("GET", path, headers=headers)[0]


def _status_as(plane, token: str, path: str) -> int:
    """HTTP status of a GET made with a bearer token."""
    context = ssl.create_default_context(cafile=str(plane.cluster.pki.ca_crt))
    api = httpjson.JsonHttp(plane.cluster.api_port, context=context, timeout=10)
    return api.request("GET", path, headers=[("Authorization", f"Bearer {token}")])[0]


def _leaks(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s in text]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_token_reaches_the_log_metrics_or_command_line(plane, tmp_path, monkeypatch):
    admin = plane.cluster.admin()
    namespace = plane.namespace("secrets")
    nodes = plane.nodes(1, cpu="8", memory="16Gi")
    sa_path = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    status, _ = admin.request("POST", sa_path, {"metadata": {"name": "wfsched"}})
    assert status == 201
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"wfsched-{namespace}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "wfsched", "namespace": namespace}],
    }
    status, _ = admin.request(
        "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding
    )
    assert status == 201
    status, reply = admin.request(
        "POST", f"{sa_path}/wfsched/token", {"spec": {"expirationSeconds": 3600}}
    )
    assert status == 201, reply
    sa_token = reply["status"]["token"]
    kubeconfig = plane.cluster.write_kubeconfig(tmp_path / "sa.kubeconfig", token=sa_token)

    monkeypatch.setenv("WFSCHED_API_TOKEN", API_SECRET)
    rest_port = devcluster.free_port()
    daemon = devcluster.LocalDaemon(
        kubeconfig,
        tmp_path,
        namespaces=[namespace],
        lease={"enabled": False},
        rest_port=rest_port,
        log_level="debug",
    )
    start_daemon(daemon)
    statuses = {}
    with CapacityMonitor(plane.core_v1, nodes, interval_s=1.0):
        for i in range(5):
            plane.core_v1.create_namespaced_pod(namespace, pod_manifest(f"p{i}", runtime="2s"))
        wait_until(lambda: count_bound(plane.core_v1, namespace) == 5, timeout_s=60, what="bound")
        statuses["no token"] = _rest(rest_port, "/v1/scheduler/run1")
        statuses["wrong token"] = _rest(rest_port, "/v1/scheduler/run1", WRONG_SECRET)
        statuses["right token"] = _rest(rest_port, "/v1/scheduler/run1", API_SECRET)
        statuses["token in query"] = _rest(rest_port, f"/v1/scheduler/run1?token={API_SECRET}")
        # Lose the permissions: every later call is a logged 403.
        admin.request(
            "DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/wfsched-{namespace}"
        )
        wait_until(
            lambda: _status_as(plane, sa_token, f"/api/v1/namespaces/{namespace}/pods") == 403,
            timeout_s=30,
            what="the revocation to take effect",
        )
        for i in range(5, 8):
            plane.core_v1.create_namespaced_pod(namespace, pod_manifest(f"p{i}", runtime="2s"))
        time.sleep(12)  # a safety cycle, bind attempts, informer errors
    assert daemon.proc is not None
    cmdline = Path(f"/proc/{daemon.proc.pid}/cmdline").read_bytes().decode(errors="replace")
    environ_config = daemon.config_path.read_text()
    metrics = daemon.metrics()
    is_alive = alive(daemon)
    daemon.stop()
    log = daemon.log_path.read_text(errors="replace")
    secrets = (API_SECRET, WRONG_SECRET, sa_token)
    leaks = {
        "log": _leaks(log, *secrets),
        "metrics": _leaks(metrics, *secrets),
        "cmdline": _leaks(cmdline, *secrets),
        "config file": _leaks(environ_config, *secrets),
    }
    forbidden_logged = log.count("403") + log.count("forbidden") + log.count("Forbidden")
    record(
        "security-secrets",
        {
            "title": "bearer tokens never reach the log, metrics or command line",
            "workflow": "8 pods; REST calls with no, a wrong, the right and a query-string token",
            "cluster": "1 KWOK node; the daemon authenticates with a service-account token",
            "injected": "debug logging, wrong REST tokens, RBAC revoked midway (403s logged)",
            "injections": 3,
            "rest_statuses": statuses,
            "log_lines": log.count("\n"),
            "forbidden_mentions_in_log": forbidden_logged,
            "leaks": {k: len(v) for k, v in leaks.items()},
            "daemon_alive_at_end": is_alive,
        },
    )
    right = statuses.pop("right token")
    assert right != 401 and right < 500, right  # authorised (the execution does not exist)
    assert statuses == {"no token": 401, "wrong token": 401, "token in query": 401}
    assert forbidden_logged > 0, "the RBAC revocation produced no logged error to inspect"
    assert leaks == {"log": [], "metrics": [], "cmdline": [], "config file": []}
    assert is_alive


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_rejected_kubeconfig_token_is_not_echoed(plane, tmp_path):
    bogus = "wfsched-bogus-token-0f3b9d2e61c7a845"
    kubeconfig = plane.cluster.write_kubeconfig(tmp_path / "bogus.kubeconfig", token=bogus)
    daemon = devcluster.LocalDaemon(
        kubeconfig, tmp_path, lease={"enabled": False}, log_level="debug"
    )
    with pytest.raises(devcluster.DevClusterError):
        daemon.start(wait_ready_s=10)
    daemon.stop()
    log = daemon.log_path.read_text(errors="replace")
    assert "401" in log or "Unauthorized" in log or "unauthorized" in log, log[-2000:]
    assert bogus not in log


# --- configuration errors -----------------------------------------------------------------------

SECRET = "hunter2-7f3a9c1e5b"


@pytest.mark.parametrize(
    "text",
    [
        f"api_token: {SECRET}\n",
        f"rest_token: {SECRET}\n",
        f"lease:\n  password: {SECRET}\n",
        f"secret: {{value: {SECRET}}}\n",
        f"bearer: [{SECRET}]\n",
    ],
)
def test_unknown_secret_looking_keys_are_named_but_their_values_never_echoed(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(settings_mod.SettingsError) as caught:
        settings_mod.load_settings(path, env={})
    assert SECRET not in str(caught.value)
    assert "unknown setting" in str(caught.value)


def test_secret_looking_environment_variables_are_never_echoed():
    env = {
        "WFSCHED_API_TOKEN": SECRET,  # read by the REST API only, never a setting
        "WFSCHED_TOKEN": SECRET,
        "WFSCHED_LEASE__PASSWORD": SECRET,
    }
    with pytest.raises(settings_mod.SettingsError) as caught:
        settings_mod.load_settings(None, env=env)
    assert SECRET not in str(caught.value)
    assert [p.split(":")[0] for p in caught.value.problems] == ["token", "lease.password"]


def test_the_cli_reports_a_bad_configuration_without_the_secret(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"api_token: {SECRET}\nqps: fast\n")
    env = {**os.environ, "WFSCHED_API_TOKEN": SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "scheduler", "run", "--check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "api_token: unknown setting" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_yaml_syntax_error_does_not_echo_the_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f'qps: 10\napi_token: "{SECRET}\n')
    with pytest.raises(settings_mod.SettingsError) as caught:
        settings_mod.load_settings(path, env={})
    assert SECRET not in str(caught.value)


def test_the_daemon_environment_keeps_only_real_overrides():
    """Test switches such as WFSCHED_RELIABILITY or WFSCHED_RELIABILITY_REPORT must not reach
    ``wfsched run``: it reads every WFSCHED_* variable as a setting and exits on unknown ones."""
    base = {
        "PATH": "/bin",
        "WFSCHED_RELIABILITY": "1",
        "WFSCHED_RELIABILITY_REPORT": "/tmp/r.json",
        "WFSCHED_API_TOKEN": SECRET,
        "WFSCHED_CONFIG": "/etc/wfsched.yaml",
        "WFSCHED_QPS": "50",
        "WFSCHED_LEASE__DURATION_S": "20",
    }
    env = devcluster.daemon_environment(base)
    assert env == {k: v for k, v in base.items() if "RELIABILITY" not in k}
    settings_mod.load_settings(None, env={k: v for k, v in env.items() if k != "WFSCHED_CONFIG"})
