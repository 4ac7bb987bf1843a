"""Resizing running pods, the I/O side: send one resize, tell the user, report to the loop.

The loop runs :func:`resize` on its side pool for each ``GrowMemory`` the state machine decided
(``scheduler.runtime.grow``), and :func:`notify` for each ``GrowNotice``. Every resize ends in
exactly one ``GrowReported`` on the loop's event queue, and one Event on the pod:
``MemoryGrown`` (Normal) or ``MemoryGrowFailed`` (Warning). A grow also records the task's
grow count in the pod's ``wfsched.io/memory-grows`` annotation.

:func:`shrink` does the same for each ``ShrinkMemory`` (``scheduler.runtime.shrink``): one
``ShrinkReported``, one Event (``MemoryShrunk`` or ``MemoryShrinkFailed``), and the pod's
memory before the shrink in ``wfsched.io/original-memory`` with the
``commonworkflowscheduler/memoryscaled`` label, as a resize before binding records them.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from scheduler.core import cluster
from scheduler.kube import errors as kube_errors
from scheduler.kube import keys, translate
from scheduler.runtime import eventrecorder
from scheduler.runtime import grow as grow_mod
from scheduler.runtime import shrink as shrink_mod

log = logging.getLogger(__name__)

MIB = 1 << 20


class Resizer(Protocol):
    """The API calls a grow makes (implemented by ``scheduler.kube.client.KubeClient``)."""

    def resize_pod(self, namespace: str, name: str, containers: list[dict[str, Any]]) -> Any:
        """PATCH ``pods/resize`` with the given container resources."""

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> Any:
        """Merge labels and annotations into a pod."""


def resize_patch(instruction: grow_mod.GrowMemory) -> list[dict[str, Any]]:
    """The ``pods/resize`` container list: request and limit in whole MiB."""
    request = -(-instruction.request_bytes // MIB)
    limit = -(-instruction.limit_bytes // MIB)
    return [
        {
            "name": instruction.container,
            "resources": {
                "requests": {"memory": f"{request}Mi"},
                "limits": {"memory": f"{limit}Mi"},
            },
        }
    ]


def resize(
    kube: Resizer,
    recorder: eventrecorder.EventRecorder,
    events: queue.Queue[Any],
    instruction: grow_mod.GrowMemory,
) -> None:
    """Send the resize; record an Event; put a ``GrowReported`` on ``events`` (always once)."""
    report = grow_mod.GrowReported(instruction=instruction, ok=False, reason="not sent")
    change = _Change(
        ref=instruction.ref,
        containers=resize_patch(instruction),
        labels=None,
        annotations={grow_mod.GROWS_ANNOTATION: str(instruction.grows)},
        done_reason="MemoryGrown",
        done_note=(
            f"memory limit raised in place from {instruction.old_limit_bytes // MIB} MiB to "
            f"{-(-instruction.limit_bytes // MIB)} MiB (usage "
            f"{instruction.usage_bytes // MIB} MiB; grow {instruction.grows})"
        ),
        failed_reason="MemoryGrowFailed",
        verb="grow",
    )
    try:
        ok, status, reason = _send(kube, recorder, change)
        report = grow_mod.GrowReported(instruction=instruction, ok=ok, status=status, reason=reason)
    except kube_errors.NotSentError:
        report = grow_mod.GrowReported(instruction=instruction, ok=False, reason="not leading")
    finally:
        events.put(report)


def notify(recorder: eventrecorder.EventRecorder, notice: grow_mod.GrowNotice) -> None:
    """Record the ``MemoryNotGrown`` Warning of a task that could not be grown."""
    ref = notice.ref
    recorder.record(
        namespace=ref.namespace,
        pod_name=ref.name,
        pod_uid=ref.uid,
        reason="MemoryNotGrown",
        note=notice.note,
        event_type="Warning",
    )


def shrink(
    kube: Resizer,
    recorder: eventrecorder.EventRecorder,
    events: queue.Queue[Any],
    instruction: shrink_mod.ShrinkMemory,
) -> None:
    """Send the shrink; record an Event; put a ``ShrinkReported`` on ``events`` (always once)."""
    report = shrink_mod.ShrinkReported(instruction=instruction, ok=False, reason="not sent")
    old_mib, new_mib = instruction.old_request_bytes // MIB, -(-instruction.request_bytes // MIB)
    change = _Change(
        ref=instruction.ref,
        containers=translate.memory_resize_patch(
            instruction.container,
            instruction.request_bytes,
            set_limit=instruction.limit_bytes == instruction.request_bytes,
        ),
        labels={keys.CWS_MEMORY_SCALED_LABEL: "true"},
        annotations={keys.ORIGINAL_MEMORY_ANNOTATION: str(instruction.old_request_bytes)},
        done_reason="MemoryShrunk",
        done_note=(
            f"memory lowered in place from {old_mib} MiB to {new_mib} MiB: the plan for "
            f"step {instruction.step[:120]} now that a task of it has finished"
        ),
        failed_reason="MemoryShrinkFailed",
        verb="shrink",
    )
    try:
        ok, status, reason = _send(kube, recorder, change)
        report = shrink_mod.ShrinkReported(
            instruction=instruction, ok=ok, status=status, reason=reason
        )
    except kube_errors.NotSentError:
        report = shrink_mod.ShrinkReported(instruction=instruction, ok=False, reason="not leading")
    finally:
        events.put(report)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Change:
    """One resize of a running pod, as the grow and the shrink describe it."""

    ref: cluster.PodRef
    containers: list[dict[str, Any]]
    """The ``pods/resize`` container list."""
    labels: Mapping[str, str] | None
    annotations: Mapping[str, str]
    """Recorded on the pod after the resize (kept across a change of leader)."""
    done_reason: str
    done_note: str
    failed_reason: str
    verb: str
    """``grow`` or ``shrink``, for the failure note and the logs."""


def _send(
    kube: Resizer, recorder: eventrecorder.EventRecorder, change: _Change
) -> tuple[bool, int, str]:
    """Send one resize, mark the pod, record the Event; return (ok, HTTP status, reason).

    Raises:
        kube_errors.NotSentError: this replica does not lead (nothing was sent).
    """
    ref = change.ref
    try:
        kube.resize_pod(ref.namespace, ref.name, change.containers)
    except kube_errors.NotSentError:
        raise
    except Exception as exc:  # refused or failed: the task runs on as it was
        status = int(getattr(exc, "http_status", 0) or 0)
        recorder.record(
            namespace=ref.namespace,
            pod_name=ref.name,
            pod_uid=ref.uid,
            reason=change.failed_reason,
            note=f"in-place memory {change.verb} refused (HTTP {status}): {str(exc)[:200]}",
            event_type="Warning",
        )
        log.warning("%s of %s/%s failed: %s", change.verb, ref.namespace, ref.name, exc)
        return False, status, str(exc)[:300]
    marks: dict[str, Mapping[str, str]] = {"annotations": change.annotations}
    if change.labels:
        marks["labels"] = change.labels
    try:  # a failure here only loses the record on the pod (kept across a change of leader)
        kube.patch_pod_metadata(ref.namespace, ref.name, **marks)
    except Exception:
        log.warning("recording the %s on %s failed", change.verb, ref.name, exc_info=True)
    recorder.record(
        namespace=ref.namespace,
        pod_name=ref.name,
        pod_uid=ref.uid,
        reason=change.done_reason,
        note=change.done_note,
    )
    log.info("%s: %s/%s: %s", change.verb, ref.namespace, ref.name, change.done_note)
    return True, 0, ""
