"""The leader's pod carries a label, so that a Service selecting it reaches the leader only.

Followers answer every REST write with 503 (they do not schedule, and CWS state lives with the
leader), and nf-cws treats any non-200 as fatal. So the chart's REST Service selects
``wfsched.io/leader: <Lease name>`` besides the release's labels: the replica that wins the
Lease labels its own pod (named by the downward API in ``$POD_NAME`` / ``$POD_NAMESPACE``),
removes the label from any other pod that still carries it (a leader killed before it could
remove its own), and removes its own label when it stops leading. The label moves on failover.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from scheduler.kube import keys

log = logging.getLogger(__name__)

POD_NAME_ENV = "POD_NAME"
"""Environment variable naming this replica's pod (downward API ``metadata.name``)."""
POD_NAMESPACE_ENV = "POD_NAMESPACE"
"""Environment variable naming its namespace (downward API ``metadata.namespace``)."""


class PodApi(Protocol):
    """The calls the label makes (``scheduler.kube.client.KubeClient``)."""

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> Any:
        """Merge labels into a pod (``None`` removes one)."""

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """List pods matching a selector."""


class LeaderPodLabel:
    """Puts ``wfsched.io/leader=<value>`` on this replica's pod and takes it off other pods."""

    def __init__(
        self,
        kube: PodApi,
        *,
        namespace: str,
        pod: str,
        value: str,
        retry_s: float = 1.0,
        attempts: int = 300,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.pod = pod
        self.value = value
        self.retry_s = retry_s
        self.attempts = attempts
        self._stop = threading.Event()
        self.claimed = False
        """:meth:`claim` ran (the label may be on this pod)."""

    @classmethod
    def from_environment(
        cls, kube: PodApi, env: Mapping[str, str], *, value: str
    ) -> LeaderPodLabel | None:
        """The label of the pod named by ``$POD_NAME``/``$POD_NAMESPACE``; None outside a pod."""
        pod, namespace = env.get(POD_NAME_ENV, ""), env.get(POD_NAMESPACE_ENV, "")
        if not pod or not namespace:
            return None
        return cls(kube, namespace=namespace, pod=pod, value=value)

    def claim(self) -> bool:
        """Label this pod, then unlabel every other; retried until done or :meth:`stop`.

        Returns:
            True when both steps succeeded.
        """
        self.claimed = True
        for attempt in range(self.attempts):
            try:
                self.kube.patch_pod_metadata(
                    self.namespace, self.pod, labels={keys.LEADER_LABEL: self.value}
                )
                stale = self.kube.list_pods(self.namespace, f"{keys.LEADER_LABEL}={self.value}")
                for item in stale:
                    name = str((item.get("metadata") or {}).get("name") or "")
                    if name and name != self.pod:
                        self.kube.patch_pod_metadata(
                            self.namespace, name, labels={keys.LEADER_LABEL: None}
                        )
                        log.info("removed a stale leader label", extra={"pod": name})
            except Exception as exc:  # API trouble: the REST Service has no endpoint meanwhile
                log.warning(
                    "labelling the leader's pod failed (attempt %d): %s",
                    attempt + 1,
                    str(exc)[:200],
                    extra={"pod": self.pod},
                )
                if self._stop.wait(self.retry_s):
                    return False
                continue
            log.info("leader label set", extra={"pod": f"{self.namespace}/{self.pod}"})
            return True
        log.error(
            "the leader label could not be set: the REST Service has no endpoint",
            extra={"pod": f"{self.namespace}/{self.pod}", "attempts": self.attempts},
        )
        return False

    def release(self) -> bool:
        """Remove the label from this pod if :meth:`claim` ran (one attempt); True when gone."""
        self._stop.set()
        if not self.claimed:
            return True
        try:
            self.kube.patch_pod_metadata(self.namespace, self.pod, labels={keys.LEADER_LABEL: None})
        except Exception as exc:  # the next leader removes it
            log.warning("removing the leader label failed: %s", str(exc)[:200])
            return False
        return True

    def stop(self) -> None:
        """End a running :meth:`claim`."""
        self._stop.set()
