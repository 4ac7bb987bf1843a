"""Where things live in the REST API, and the time formats the API expects.

Pure helpers shared by the transport, the client and tests: ``Resource`` builds request
paths for a collection, an object or a subresource; ``RESOURCES`` names the collections
wfsched uses; ``micro_time``/``rfc3339`` format timezone-aware times as ``MicroTime`` and
``Time``.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

JsonDict = dict[str, Any]
"""A decoded JSON object as the API server sent it."""

METRICS_API_PATH: Final = "/apis/metrics.k8s.io/v1beta1"
"""Base path of the resource metrics API served by metrics-server."""


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a collection lives in the REST API.

    Attributes:
        group: API group (``""`` for the core group).
        version: API version.
        plural: Collection name in paths.
        kind: ``kind`` of one object.
        namespaced: True when objects live in namespaces.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """``apiVersion`` of the objects (``v1`` or ``group/version``)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, *, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        """Return the request path of the collection, one object, or a subresource.

        Args:
            namespace: Namespace for namespaced resources; ``None`` lists across namespaces.
            name: Object name; ``None`` for the collection.
            subresource: ``binding``, ``status``, ``resize``, ...; needs ``name``.

        Returns:
            The absolute path, names percent-encoded.
        """
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote_segment(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote_segment(name)}"
            if subresource:
                base += f"/{subresource}"
        return base


RESOURCES: Final[Mapping[str, Resource]] = {
    "pods": Resource("", "v1", "pods", "Pod", True),
    "nodes": Resource("", "v1", "nodes", "Node", False),
    "configmaps": Resource("", "v1", "configmaps", "ConfigMap", True),
    "namespaces": Resource("", "v1", "namespaces", "Namespace", False),
    "leases": Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    "events": Resource("events.k8s.io", "v1", "events", "Event", True),
    "podgroups": Resource("scheduling.k8s.io", "v1alpha2", "podgroups", "PodGroup", True),
}
"""The collections wfsched reads, by the name callers pass as ``kind``."""


def resource_for(kind: str | Resource) -> Resource:
    """Return the ``Resource`` for a collection name (or pass one through).

    Raises:
        ValueError: the name is not in ``RESOURCES``.
    """
    if isinstance(kind, Resource):
        return kind
    try:
        return RESOURCES[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(RESOURCES)}") from None


def quote_segment(segment: str) -> str:
    """Percent-encode one path segment (names never contain ``/``, but be safe)."""
    return urllib.parse.quote(segment, safe="")


def micro_time(when: datetime.datetime | None = None) -> str:
    """Format a timezone-aware time as a Kubernetes ``MicroTime`` (UTC, microseconds).

    Args:
        when: The time; now when ``None``. Naive values are rejected.

    Raises:
        ValueError: ``when`` is naive.
    """
    moment = when or datetime.datetime.now(datetime.UTC)
    if moment.tzinfo is None:
        raise ValueError("MicroTime needs a timezone-aware datetime")
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(when: datetime.datetime | None = None) -> str:
    """Format a timezone-aware time as a Kubernetes ``Time`` (UTC, seconds)."""
    moment = when or datetime.datetime.now(datetime.UTC)
    if moment.tzinfo is None:
        raise ValueError("Time needs a timezone-aware datetime")
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
