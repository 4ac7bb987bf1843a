"""The Helm chart renders what the daemon and the cluster need, and rejects bad values.

Runs the Go-built helm (``helm lint`` / ``helm template`` for Kubernetes 1.36) and checks the
rendered manifests: the configuration the daemon reads, the pod's security settings and probes,
the RBAC rules, and each optional feature. The configuration is fed to the daemon's own settings
loader and command line, so chart and daemon cannot drift apart unnoticed.
"""

from __future__ import annotations

import base64
import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler import cli, registry
from scheduler.runtime import settings as settings_mod

from .chart_helpers import CHART, KUBE_VERSION, index, kinds, one, render, render_error, run_helm

RELEASE_NS = "wfsched-system"
RENDERED_SETTINGS = {
    "scheduler_names",
    "policy",
    "predictor",
    "min_memory_bytes",
    "min_memory_per_cpu_bytes",
    "max_memory_bytes",
    "memory_priors",
    "memory_store_configmap",
    "memory_save_interval_s",
    "grow_in_place",
    "grow_threshold",
    "grow_factor",
    "grow_max_times",
    "grow_max_memory_bytes",
    "shrink_running",
    "shrink_min_saving_bytes",
    "namespaces",
    "qps",
    "burst",
    "bind_workers",
    "cycle_interval_s",
    "unschedulable_backoff_s",
    "unschedulable_report_interval_s",
    "arrival_settle_s",
    "arrival_settle_max_s",
    "stale_pending_s",
    "finished_run_idle_s",
    "seed",
    "metrics_poll_s",
    "health_port",
    "rest_port",
    "adopt_unregistered_executions",
    "cws_execution_idle_s",
    "cws_state_save_interval_s",
    "log_format",
    "log_level",
    "lease",
}


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = index(docs)[("ConfigMap", "wfsched-config")]
    loaded: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return loaded


def _settings(docs: list[dict[str, Any]], tmp_path: Path) -> settings_mod.Settings:
    path = tmp_path / "config.yaml"
    path.write_text(index(docs)[("ConfigMap", "wfsched-config")]["data"]["config.yaml"])
    return settings_mod.load_settings(path, env={})


def _pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod_spec(docs)["containers"]
    return dict(container)


def _env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e for e in _container(docs).get("env", [])}


# --- lint -------------------------------------------------------------------------------------

ALL_FEATURES: dict[str, Any] = {
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {"enabled": True},
    "apiToken": {"create": True, "value": "s3cret"},
    "snakemake": {"mutatingPolicy": {"enabled": True}},
    "rbac": {"read": {"argoWorkflows": True, "jobs": True, "kueueWorkloads": True}},
}


@pytest.mark.parametrize("values", [None, ALL_FEATURES], ids=["defaults", "all-features"])
def test_helm_lint_is_clean(helm: Path, values: dict[str, Any] | None) -> None:
    result = run_helm(
        helm, ["lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART)], values=values
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.33.0-0"
    project = (CHART.parents[1] / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', project, re.MULTILINE)
    assert version and chart["appVersion"] == version.group(1)


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_render_the_expected_objects(helm: Path) -> None:
    docs = render(helm)
    assert kinds(docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "Service",
        "ServiceAccount",
    ]
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == RELEASE_NS, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "wfsched"


def test_default_configuration_is_accepted_by_the_daemon(helm: Path, tmp_path: Path) -> None:
    docs = render(helm)
    settings = _settings(docs, tmp_path)
    assert settings.scheduler_names == (settings_mod.DEFAULT_SCHEDULER_NAME,)
    assert settings.scheduler_names == ("workflow-scheduler",)
    assert str(registry.parse_strategy(settings.policy)) == "rank_min-roundrobin"
    assert settings.predictor == ""
    assert settings.lease.enabled is True
    assert settings.lease.namespace == RELEASE_NS
    assert settings.lease.name == "wfsched"
    assert (settings.health_port, settings.rest_port) == (10259, 8080)
    assert (settings.qps, settings.burst, settings.bind_workers) == (200.0, 400, 16)
    assert settings.log_format == "json"
    # Every rendered key is a setting of the daemon (load_settings would refuse others), and
    # the chart renders all of these; settings added later are reachable through extraEnv
    # (WFSCHED_* overrides) until the chart gets a value for them.
    rendered = set(_config(docs))
    assert rendered <= set(settings_mod.Settings.__dataclass_fields__)
    assert rendered == RENDERED_SETTINGS


def test_grow_in_place_is_off_by_default_and_its_values_reach_the_daemon(
    helm: Path, tmp_path: Path
) -> None:
    assert _settings(render(helm), tmp_path).grow_in_place is False
    grow = {"enabled": True, "threshold": 0.7, "factor": 2, "maxTimes": 2, "maxMemoryBytes": 2**34}
    settings = _settings(render(helm, {"policies": {"growInPlace": grow}}), tmp_path)
    assert settings.grow_in_place is True
    assert (settings.grow_threshold, settings.grow_factor) == (0.7, 2)
    assert (settings.grow_max_times, settings.grow_max_memory_bytes) == (2, 2**34)
    for bad in ({"threshold": 1}, {"factor": 1}, {"maxTimes": 0}, {"speed": 3}):
        assert "growInPlace" in render_error(helm, {"policies": {"growInPlace": bad}})


def test_shrink_running_is_off_by_default_and_its_values_reach_the_daemon(
    helm: Path, tmp_path: Path
) -> None:
    defaults = _settings(render(helm), tmp_path)
    assert (defaults.shrink_running, defaults.shrink_min_saving_bytes) == (False, 256 << 20)
    shrink = {"enabled": True, "minSavingBytes": 2**30}
    values = {"policies": {"predictor": "envelope", "shrinkRunning": shrink}}
    settings = _settings(render(helm, values), tmp_path)
    assert (settings.shrink_running, settings.shrink_min_saving_bytes) == (True, 2**30)
    for bad in ({"minSavingBytes": -1}, {"enabled": "yes"}, {"factor": 3}):
        assert "shrinkRunning" in render_error(helm, {"policies": {"shrinkRunning": bad}})


def test_deployment_runs_the_daemon_hardened(helm: Path) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = _pod_spec(docs)
    container = _container(docs)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert (sc["runAsUser"], sc["runAsGroup"]) == (65532, 65532)
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["args"] == ["--config", "/etc/wfsched/config.yaml"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]
    config_volume = volumes[mounts["/etc/wfsched"]["name"]]
    assert config_volume["configMap"]["name"] == "wfsched-config"
    assert config_volume["configMap"]["items"] == [{"key": "config.yaml", "path": "config.yaml"}]
    assert mounts["/etc/wfsched"]["readOnly"] is True
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 10259, "http": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert "WFSCHED_API_TOKEN" not in _env(docs)
    assert container["image"] == "wfsched:0.1.0"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_config_checksum_follows_the_configuration(helm: Path) -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        deployment = one(render(helm, values), "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum(None) == checksum({"image": {"tag": "9.9.9"}})
    assert checksum(None) != checksum({"policies": {"ranking": "fifo"}})


def test_rest_service_reaches_the_leader_and_metrics_every_replica(helm: Path) -> None:
    docs = render(helm, {"leaderElection": {"leaseName": "my-lease"}})
    services = index(docs)
    rest, metrics = services[("Service", "wfsched")], services[("Service", "wfsched-metrics")]

    def ports(service: dict[str, Any]) -> dict[str, tuple[int, str]]:
        return {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}

    assert ports(rest) == {"http": (8080, "http")}
    assert ports(metrics) == {"metrics": (10259, "metrics")}
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    replicas = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert metrics["spec"]["selector"] == replicas
    # The REST Service: the replicas' labels plus the label the leader puts on its own pod.
    assert rest["spec"]["selector"] == {**replicas, "wfsched.io/leader": "my-lease"}
    assert "wfsched.io/leader" not in pod_labels
    assert _settings_lease_name(docs) == "my-lease"
    env = _env(docs)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def _settings_lease_name(docs: list[dict[str, Any]]) -> str:
    name: str = _config(docs)["lease"]["name"]
    return name


def test_rest_disabled_drops_the_port_everywhere(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, {"rest": {"enabled": False}, "networkPolicy": {"enabled": True}})
    assert _settings(docs, tmp_path).rest_port == 0
    assert [p["name"] for p in one(docs, "Service")["spec"]["ports"]] == ["metrics"]
    assert all(r["resources"] == ["leases"] for r in one(docs, "Role")["rules"])  # no state
    assert [p["name"] for p in _container(docs)["ports"]] == ["metrics"]
    ingress = one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert [rule["ports"][0]["port"] for rule in ingress] == ["metrics"]


# --- RBAC -------------------------------------------------------------------------------------


def _rule_triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


EXPECTED_CLUSTER_RULES = {
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods", "patch"),
    ("", "pods/binding", "create"),
    ("", "pods/status", "patch"),
    ("", "pods/resize", "get"),
    ("", "pods/resize", "patch"),
    ("", "nodes", "get"),
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("", "events", "create"),
    ("", "events", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    ("", "configmaps", "get"),
    ("", "configmaps", "list"),
    ("", "configmaps", "watch"),
    ("metrics.k8s.io", "nodes", "get"),
    ("metrics.k8s.io", "nodes", "list"),
    ("metrics.k8s.io", "pods", "get"),
    ("metrics.k8s.io", "pods", "list"),
    ("scheduling.k8s.io", "podgroups", "get"),
    ("scheduling.k8s.io", "podgroups", "list"),
    ("scheduling.k8s.io", "podgroups", "watch"),
}


def test_cluster_role_grants_exactly_the_minimum(helm: Path) -> None:
    docs = render(helm)
    role = one(docs, "ClusterRole")
    assert all("resourceNames" not in rule for rule in role["rules"])
    assert _rule_triples(role["rules"]) == EXPECTED_CLUSTER_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "wfsched", "namespace": RELEASE_NS}
    ]
    # Cluster-scoped names carry the namespace: two releases never share a ClusterRole.
    assert role["metadata"]["name"] == f"{RELEASE_NS}-wfsched"


def test_optional_reads_add_only_read_verbs(helm: Path) -> None:
    docs = render(helm, {"rbac": {"read": {"argoWorkflows": True, "jobs": True}}})
    extra = _rule_triples(one(docs, "ClusterRole")["rules"]) - EXPECTED_CLUSTER_RULES
    assert extra == {
        (group, resource, verb)
        for group, resource in (("argoproj.io", "workflows"), ("batch", "jobs"))
        for verb in ("get", "list", "watch")
    }


def test_lease_role_is_limited_to_the_configured_lease(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, {"leaderElection": {"leaseName": "my-lease"}})
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == RELEASE_NS
    create, named = role["rules"][:2]
    assert create == {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["create"],
    }
    assert named["resourceNames"] == ["my-lease"]
    assert sorted(named["verbs"]) == ["get", "update"]
    settings = _settings(docs, tmp_path)
    assert (settings.lease.name, settings.lease.namespace) == ("my-lease", RELEASE_NS)
    assert one(docs, "RoleBinding")["roleRef"]["name"] == role["metadata"]["name"]


CREATE_CONFIGMAPS = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}
CWS_STATE_RULE = {
    "apiGroups": [""],
    "resources": ["configmaps"],
    "verbs": ["get", "list", "patch", "delete"],
}


def test_memory_store_rules_only_with_a_predictor(helm: Path, tmp_path: Path) -> None:
    no_rest = {"rest": {"enabled": False}}
    docs = render(helm, {"policies": {"predictor": "ponder"}, **no_rest})
    rules = one(docs, "Role")["rules"]
    assert rules[2:] == [
        CREATE_CONFIGMAPS,
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["wfsched-memory"],
            "verbs": ["get", "patch"],
        },
    ]
    assert _settings(docs, tmp_path).memory_store_configmap == "wfsched-memory"
    # Without a predictor (nor CWS state) the daemon keeps no store: no write access at all.
    assert all(r["resources"] == ["leases"] for r in one(render(helm, no_rest), "Role")["rules"])
    # Without leader election the Role holds only the memory store.
    docs = render(
        helm,
        {"replicaCount": 1, "leaderElect": False, "policies": {"predictor": "ponder"}, **no_rest},
    )
    assert [r["resources"] for r in one(docs, "Role")["rules"]] == [["configmaps"]] * 2


def test_cws_state_rules_only_with_the_rest_api_keeping_state(helm: Path, tmp_path: Path) -> None:
    docs = render(helm)
    assert one(docs, "Role")["rules"][2:] == [CREATE_CONFIGMAPS, CWS_STATE_RULE]
    assert _settings(docs, tmp_path).cws_state_save_interval_s == 1.0
    docs = render(helm, {"policies": {"predictor": "ponder"}})
    rules = one(docs, "Role")["rules"]
    assert rules.count(CREATE_CONFIGMAPS) == 1 and rules[-1] == CWS_STATE_RULE
    docs = render(helm, {"rest": {"enabled": True, "port": 8080, "stateSaveIntervalSeconds": 0}})
    assert all(r["resources"] == ["leases"] for r in one(docs, "Role")["rules"])
    assert _settings(docs, tmp_path).cws_state_save_interval_s == 0


def test_rbac_can_be_left_to_the_cluster_admin(helm: Path) -> None:
    docs = render(helm, {"rbac": {"create": False}, "serviceAccount": {"create": False}})
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"} & set(
        kinds(docs)
    )
    assert _pod_spec(docs)["serviceAccountName"] == "default"


# --- variations -------------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_port(helm: Path) -> None:
    docs = render(helm, {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = index(docs)[("Service", "wfsched-metrics")]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == (
        "metrics",
        "/metrics",
        "30s",
    )


def test_network_policy_opens_only_rest_and_metrics(helm: Path) -> None:
    rest_peer = {"namespaceSelector": {"matchLabels": {"team": "bio"}}}
    docs = render(helm, {"networkPolicy": {"enabled": True, "restFrom": [rest_peer]}})
    policy = one(docs, "NetworkPolicy")["spec"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    rest, metrics = policy["ingress"]
    assert rest == {"ports": [{"port": "http", "protocol": "TCP"}], "from": [rest_peer]}
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}]}
    egress = [{"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 6443}]}]
    docs = render(helm, {"networkPolicy": {"enabled": True, "egress": egress}})
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == egress


def test_token_secret_feeds_the_api_token(helm: Path) -> None:
    docs = render(helm, {"apiToken": {"create": True, "value": "s3cret"}})
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["token"]).decode() == "s3cret"
    ref = _env(docs)["WFSCHED_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "token"}


def test_generated_token_is_long_and_random(helm: Path) -> None:
    tokens = {
        base64.b64decode(
            one(render(helm, {"apiToken": {"create": True}}), "Secret")["data"]["token"]
        )
        for _ in range(2)
    }
    assert len(tokens) == 2
    assert all(re.fullmatch(rb"[A-Za-z0-9]{40}", t) for t in tokens)


def test_existing_secret_is_referenced_not_created(helm: Path) -> None:
    values = {"apiToken": {"create": True, "existingSecret": "my-token", "secretKey": "bearer"}}
    docs = render(helm, values)
    assert "Secret" not in kinds(docs)
    ref = _env(docs)["WFSCHED_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "my-token", "key": "bearer"}


def test_extra_env_overrides_reach_the_daemon(helm: Path, tmp_path: Path) -> None:
    extra = [{"name": "WFSCHED_LEASE__DURATION_S", "value": "40"}]
    docs = render(helm, {"extraEnv": extra})
    env = _env(docs)
    assert env["WFSCHED_LEASE__DURATION_S"] == extra[0]
    path = tmp_path / "config.yaml"
    path.write_text(index(docs)[("ConfigMap", "wfsched-config")]["data"]["config.yaml"])
    as_pod_sees_it = {e["name"]: e["value"] for e in env.values() if "value" in e}
    settings = settings_mod.load_settings(path, env=as_pod_sees_it)
    assert settings.lease.duration_s == 40.0
    assert settings.lease.namespace == RELEASE_NS  # the file still supplies the rest


def test_single_replica_without_leader_election(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, {"replicaCount": 1, "leaderElect": False})
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    assert "PodDisruptionBudget" not in kinds(docs)
    # No lease; the Role only keeps CWS executions across restarts.
    assert one(docs, "Role")["rules"] == [CREATE_CONFIGMAPS, CWS_STATE_RULE]
    assert _settings(docs, tmp_path).lease.enabled is False


def test_scheduling_values_reach_the_daemon(helm: Path, tmp_path: Path) -> None:
    values = {
        "scheduler": {
            "name": "nf-scheduler",
            "extraNames": ["argo-scheduler", "nf-scheduler"],
            "namespaces": ["genomics"],
            "qps": 50,
            "burst": 100,
            "bindWorkers": 4,
        },
        "policies": {
            "ranking": "critical_path",
            "assignment": "binpack",
            "predictor": "lr2-offset=none",
            "minMemoryBytes": 268435456,
            "minMemoryPerCpuBytes": 536870912,
            "maxMemoryBytes": 68719476736,
            "memoryStoreConfigMap": "nf-memory",
            "memorySaveIntervalSeconds": 5,
        },
        "logging": {"format": "console", "level": "debug"},
        "metrics": {"port": 9100},
        "rest": {
            "port": 8081,
            "adoptUnregisteredExecutions": True,
            "executionIdleSeconds": 7200,
            "stateSaveIntervalSeconds": 2,
        },
        "leaderElection": {
            "leaseDurationSeconds": 30,
            "renewDeadlineSeconds": 20,
            "retryPeriodSeconds": 4,
        },
    }
    docs = render(helm, values)
    settings = _settings(docs, tmp_path)
    assert settings.scheduler_names == ("nf-scheduler", "argo-scheduler")
    assert settings.namespaces == ("genomics",)
    assert (settings.qps, settings.burst, settings.bind_workers) == (50.0, 100, 4)
    assert str(registry.parse_strategy(settings.policy)) == "critical_path-binpack"
    registry.parse_predictor(settings.predictor)
    assert (settings.min_memory_bytes, settings.max_memory_bytes) == (268435456, 68719476736)
    assert settings.min_memory_per_cpu_bytes == 536870912
    assert (settings.memory_store_configmap, settings.memory_save_interval_s) == ("nf-memory", 5)
    assert one(docs, "Role")["rules"][3]["resourceNames"] == ["nf-memory"]
    assert (settings.log_format, settings.log_level) == ("console", "debug")
    assert (settings.health_port, settings.rest_port) == (9100, 8081)
    assert settings.adopt_unregistered_executions is True
    assert (settings.cws_execution_idle_s, settings.cws_state_save_interval_s) == (7200, 2)
    assert (settings.lease.duration_s, settings.lease.renew_deadline_s) == (30.0, 20.0)
    assert settings.lease.retry_period_s == 4.0
    ports = {p["name"]: p["containerPort"] for p in _container(docs)["ports"]}
    assert ports == {"metrics": 9100, "http": 8081}
    # The daemon's own start-up check accepts what the chart renders.
    path = tmp_path / "config.yaml"
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(["run", "--check-config", "--config", str(path)])
    assert status == 0, err.getvalue()
    assert out.getvalue().strip() == "configuration ok"


def test_pod_placement_values(helm: Path) -> None:
    toleration = {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "infra", "operator": "Exists"}]}
                ]
            }
        }
    }
    docs = render(
        helm,
        {
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [toleration],
            "affinity": affinity,
            "priorityClassName": "system-cluster-critical",
            "image": {"repository": "registry.example.org/wfsched", "digest": "sha256:" + "a" * 64},
        },
    )
    pod = _pod_spec(docs)
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [toleration]
    assert pod["affinity"] == affinity
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert _container(docs)["image"] == "registry.example.org/wfsched@sha256:" + "a" * 64


def test_dashboard_configmap_carries_the_dashboard(helm: Path) -> None:
    docs = render(
        helm,
        {
            "grafanaDashboard": {
                "labelKey": "grafana.io/dashboard",
                "labelValue": "wf",
                "namespace": "monitoring",
            }
        },
    )
    cm = index(docs)[("ConfigMap", "wfsched-dashboard")]
    assert cm["metadata"]["labels"]["grafana.io/dashboard"] == "wf"
    assert cm["metadata"]["namespace"] == "monitoring"
    shipped = json.loads((CHART / "dashboards" / "wfsched.json").read_text())
    assert json.loads(cm["data"]["wfsched.json"]) == shipped
    default = index(render(helm))[("ConfigMap", "wfsched-dashboard")]
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "ConfigMap" in kinds(render(helm, {"grafanaDashboard": {"enabled": False}}))
    assert ("ConfigMap", "wfsched-dashboard") not in index(
        render(helm, {"grafanaDashboard": {"enabled": False}})
    )


def test_snakemake_policy_names_the_scheduler(helm: Path) -> None:
    docs = render(
        helm,
        {
            "scheduler": {"name": "wf"},
            "snakemake": {
                "mutatingPolicy": {
                    "enabled": True,
                    "namespaceSelector": {"matchLabels": {"wfsched/snakemake": "on"}},
                }
            },
        },
    )
    policy = one(docs, "MutatingAdmissionPolicy")
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    expression = policy["spec"]["mutations"][0]["applyConfiguration"]["expression"]
    assert 'schedulerName: "wf"' in expression
    binding = one(docs, "MutatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"wfsched/snakemake": "on"}
    }


# --- values the chart must refuse ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"replicaCount": "2"}, "/replicaCount': got string, want integer"),
        ({"replicaCas": 2}, "additional properties 'replicaCas' not allowed"),
        ({"scheduler": {"nmae": "x"}}, "additional properties 'nmae' not allowed"),
        ({"scheduler": {"name": "Workflow_Scheduler"}}, "/scheduler/name"),
        ({"scheduler": {"bindWorkers": 0}}, "/scheduler/bindWorkers"),
        ({"scheduler": {"qps": 0}}, "/scheduler/qps"),
        ({"policies": {"memorySaveIntervalSeconds": 0}}, "/policies/memorySaveIntervalSeconds"),
        ({"policies": {"ranking": "shortest-job"}}, "/policies/ranking"),
        ({"policies": {"assignment": "spread"}}, "/policies/assignment"),
        ({"logging": {"format": "xml"}}, "/logging/format"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"rest": {"port": "8080"}}, "/rest/port"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"leaderElect": "yes"}, "/leaderElect"),
        ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
        ({"nodeSelector": {"zone": 1}}, "/nodeSelector/zone"),
        ({"tolerations": {"key": "x"}}, "/tolerations"),
        ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
        ({"replicaCount": 2, "leaderElect": False}, "requires leaderElect: true"),
        (
            {"leaderElection": {"renewDeadlineSeconds": 15}},
            "renewDeadlineSeconds must be shorter than",
        ),
        (
            {"policies": {"minMemoryBytes": 1024, "maxMemoryBytes": 512}},
            "maxMemoryBytes must be >= policies.minMemoryBytes",
        ),
        ({"rest": {"port": 10259}}, "rest.port and metrics.port must differ"),
    ],
)
def test_bad_values_are_rejected(helm: Path, values: dict[str, Any], message: str) -> None:
    error = render_error(helm, values)
    assert message in error, error


def test_schema_policy_names_match_the_registry() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    policies = schema["properties"]["policies"]["properties"]
    assert policies["ranking"]["enum"] == list(registry.RANKINGS)
    assert policies["assignment"]["enum"] == list(registry.ASSIGNMENTS)


def test_every_default_value_is_described_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and node.get("additionalProperties") is False:
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} is not in the schema"
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")
    assert schema["additionalProperties"] is False


def test_memory_priors_are_on_by_default_and_can_be_turned_off(helm: Path, tmp_path: Path) -> None:
    assert _settings(render(helm), tmp_path).memory_priors is True
    off = render(helm, {"policies": {"memoryPriors": False}})
    assert _settings(off, tmp_path).memory_priors is False
