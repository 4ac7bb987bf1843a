"""Helpers for the chart tier: render the chart with the Go-built helm, talk to the live API server.

``render`` runs ``helm template`` with a values mapping and returns the parsed manifests;
``Kube`` is the dev cluster's admin client (``devcluster.AdminClient``) that can also send
server-side apply patches, impersonate a service account and ask SubjectAccessReviews.
"""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scheduler.devtools import devcluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "wfsched"
KUBE_VERSION = "1.36.0"
FIELD_MANAGER = "wfsched-chart-test"

Applier = Callable[..., tuple[int, Any]]
"""The ``apply`` fixture: server-side apply one manifest, ``dry_run`` optional."""


def helm_binary() -> Path:
    """Return the cached helm binary (raises ``MissingBinariesError`` naming the build command)."""
    return devcluster.locate_binaries(["helm"], build_missing=False)["helm"]


@dataclass(frozen=True, slots=True)
class HelmResult:
    """Exit status and output of one helm call."""

    returncode: int
    stdout: str
    stderr: str


def run_helm(
    helm: Path,
    args: Sequence[str],
    *,
    values: Mapping[str, Any] | None = None,
) -> HelmResult:
    """Run helm with ``args`` (plus ``-f <values file>`` when ``values`` is given)."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(helm), *args]
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(yaml.safe_dump(dict(values)))
            argv += ["-f", str(path)]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            # helm keeps caches and its registry config under $HOME; keep them out of the way.
            env={"HOME": tmp, "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": f"{tmp}/cache"},
        )
        return HelmResult(proc.returncode, proc.stdout, proc.stderr)


def render(
    helm: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "wfsched",
    namespace: str = "wfsched-system",
) -> list[dict[str, Any]]:
    """Return the manifests ``helm template`` renders; fail with helm's message on error."""
    result = run_helm(
        helm,
        ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION],
        values=values,
    )
    if result.returncode != 0:
        raise AssertionError(f"helm template failed: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(helm: Path, values: Mapping[str, Any]) -> str:
    """Return helm's error message for values that must be rejected (fails if accepted)."""
    result = run_helm(
        helm,
        ["template", "wfsched", str(CHART), "--kube-version", KUBE_VERSION],
        values=values,
    )
    if result.returncode == 0:
        raise AssertionError(f"helm accepted values it should reject: {values}")
    return result.stderr


def index(docs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return ``{(kind, name): manifest}``; fails on a duplicate."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in out, f"duplicate {key}"
        out[key] = dict(doc)
    return out


def one(docs: Iterable[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    """Return the only manifest of ``kind``."""
    found = [dict(d) for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kinds(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return the sorted kinds of the manifests."""
    return sorted(d["kind"] for d in docs)


def service_account_user(namespace: str, name: str) -> tuple[str, list[str]]:
    """Return the user name and groups the API server gives a service account's token."""
    return (
        f"system:serviceaccount:{namespace}:{name}",
        ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
    )


@dataclass(frozen=True, slots=True)
class Resource:
    """Where the API serves one kind."""

    group_version: str
    plural: str
    namespaced: bool


class Kube(devcluster.AdminClient):
    """The dev cluster's admin client, plus discovery, server-side apply, impersonation and
    SubjectAccessReviews."""

    def __init__(self, cluster: devcluster.DevCluster) -> None:
        super().__init__(cluster.api_port, cluster.pki)
        self._discovery: dict[str, dict[str, Resource] | None] = {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        as_user: tuple[str, Sequence[str]] | None = None,
        **options: Any,
    ) -> tuple[int, Any]:
        """``AdminClient.request``; ``as_user`` (name, groups) impersonates that user."""
        if as_user is not None:
            groups = [("Impersonate-Group", group) for group in as_user[1]]  # one header each
            options["headers"] = [("Impersonate-User", as_user[0]), *groups]
        return super().request(method, path, body, **options)

    def create_namespace(self, prefix: str) -> str:
        """Create a namespace with a fresh name starting with ``prefix``; return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        status, body = self.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        assert status == 201, body
        return name

    def resource(self, api_version: str, kind: str) -> Resource | None:
        """Return where ``kind`` is served, or ``None`` if the API server does not serve it."""
        if api_version not in self._discovery:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            status, body = self.request("GET", base)
            table: dict[str, Resource] | None = None
            if status == 200:
                table = {
                    r["kind"]: Resource(api_version, r["name"], r["namespaced"])
                    for r in body["resources"]
                    if "/" not in r["name"]
                }
            elif status != 404:
                raise AssertionError(f"discovery of {api_version}: HTTP {status}: {body}")
            self._discovery[api_version] = table
        table = self._discovery[api_version]
        return None if table is None else table.get(kind)

    def forget_discovery(self, api_version: str) -> None:
        """Drop what discovery said about ``api_version`` (after a CRD came or went)."""
        self._discovery.pop(api_version, None)

    def object_path(self, manifest: Mapping[str, Any], namespace: str | None = None) -> str:
        """Return the URL path of one object (its collection's path plus its name)."""
        res = self.resource(manifest["apiVersion"], manifest["kind"])
        assert res is not None, f"{manifest['apiVersion']} {manifest['kind']} is not served"
        base = "/api/v1" if res.group_version == "v1" else f"/apis/{res.group_version}"
        ns = namespace or manifest["metadata"].get("namespace")
        if res.namespaced:
            assert ns, f"{manifest['kind']} {manifest['metadata']['name']} needs a namespace"
            base = f"{base}/namespaces/{ns}"
        return f"{base}/{res.plural}/{manifest['metadata']['name']}"

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> tuple[int, Any]:
        """Server-side apply one manifest (strict field validation); return status and body."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
        if dry_run:
            query["dryRun"] = "All"
        return self.request(
            "PATCH",
            self.object_path(manifest),
            yaml.safe_dump(dict(manifest)),
            content_type="application/apply-patch+yaml",
            query=query,
        )

    def delete(self, manifest: Mapping[str, Any]) -> int:
        """Delete one object; return the status (404 is fine for clean-ups)."""
        status, _ = self.request("DELETE", self.object_path(manifest))
        return status

    def can(
        self,
        user: tuple[str, Sequence[str]],
        *,
        verb: str,
        resource: str,
        group: str = "",
        namespace: str = "",
        subresource: str = "",
        name: str = "",
    ) -> bool:
        """Ask a SubjectAccessReview whether ``user`` may do ``verb`` on the resource."""
        attributes = {
            "verb": verb,
            "group": group,
            "resource": resource,
            "subresource": subresource,
            "namespace": namespace,
            "name": name,
        }
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user[0],
                "groups": list(user[1]),
                "resourceAttributes": {k: v for k, v in attributes.items() if v},
            },
        }
        status, reply = self.request(
            "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body
        )
        assert status == 201, f"SubjectAccessReview: HTTP {status}: {reply}"
        return bool(reply["status"].get("allowed"))
