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
from typing import Any, Protocol

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
    ref = instruction.ref
    report = grow_mod.GrowReported(instruction=instruction, ok=False, reason="not sent")
    try:
        kube.resize_pod(ref.namespace, ref.name, resize_patch(instruction))
        report = grow_mod.GrowReported(instruction=instruction, ok=True)
        try:  # the count survives a change of leader; a failure only loses that
            kube.patch_pod_metadata(
                ref.namespace,
                ref.name,
                annotations={grow_mod.GROWS_ANNOTATION: str(instruction.grows)},
            )
        except Exception:
            log.warning("recording the grow count on %s failed", ref.name, exc_info=True)
        recorder.record(
            namespace=ref.namespace,
            pod_name=ref.name,
            pod_uid=ref.uid,
            reason="MemoryGrown",
            note=(
                f"memory limit raised in place from {instruction.old_limit_bytes // MIB} MiB to "
                f"{-(-instruction.limit_bytes // MIB)} MiB (usage "
                f"{instruction.usage_bytes // MIB} MiB; grow {instruction.grows})"
            ),
        )
        log.info(
            "grew %s/%s to %d MiB",
            ref.namespace,
            ref.name,
            instruction.limit_bytes // MIB,
            extra={"pod": ref.name, "grows": instruction.grows},
        )
    except kube_errors.NotSentError:
        report = grow_mod.GrowReported(instruction=instruction, ok=False, reason="not leading")
    except Exception as exc:  # refused or failed: the room is given back, the task runs on
        status = int(getattr(exc, "http_status", 0) or 0)
        report = grow_mod.GrowReported(
            instruction=instruction, ok=False, status=status, reason=str(exc)[:300]
        )
        recorder.record(
            namespace=ref.namespace,
            pod_name=ref.name,
            pod_uid=ref.uid,
            reason="MemoryGrowFailed",
            note=f"in-place memory grow refused (HTTP {status}): {str(exc)[:200]}",
            event_type="Warning",
        )
        log.warning("growing %s/%s failed: %s", ref.namespace, ref.name, exc)
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
    ref = instruction.ref
    report = shrink_mod.ShrinkReported(instruction=instruction, ok=False, reason="not sent")
    old_mib, new_mib = instruction.old_request_bytes // MIB, -(-instruction.request_bytes // MIB)
    try:
        kube.resize_pod(
            ref.namespace,
            ref.name,
            translate.memory_resize_patch(
                instruction.container,
                instruction.request_bytes,
                set_limit=instruction.limit_bytes == instruction.request_bytes,
            ),
        )
        report = shrink_mod.ShrinkReported(instruction=instruction, ok=True)
        try:  # records that we resized it (a new leader leaves it alone); a failure loses that
            kube.patch_pod_metadata(
                ref.namespace,
                ref.name,
                labels={keys.CWS_MEMORY_SCALED_LABEL: "true"},
                annotations={keys.ORIGINAL_MEMORY_ANNOTATION: str(instruction.old_request_bytes)},
            )
        except Exception:
            log.warning("recording the shrink of %s failed", ref.name, exc_info=True)
        recorder.record(
            namespace=ref.namespace,
            pod_name=ref.name,
            pod_uid=ref.uid,
            reason="MemoryShrunk",
            note=(
                f"memory lowered in place from {old_mib} MiB to {new_mib} MiB: the plan for "
                f"step {instruction.step[:120]} now that a task of it has finished"
            ),
        )
        log.info(
            "shrank %s/%s from %d MiB to %d MiB",
            ref.namespace,
            ref.name,
            old_mib,
            new_mib,
            extra={"pod": ref.name, "step": instruction.step},
        )
    except kube_errors.NotSentError:
        report = shrink_mod.ShrinkReported(instruction=instruction, ok=False, reason="not leading")
    except Exception as exc:  # refused or failed: the task runs on with its memory
        status = int(getattr(exc, "http_status", 0) or 0)
        report = shrink_mod.ShrinkReported(
            instruction=instruction, ok=False, status=status, reason=str(exc)[:300]
        )
        recorder.record(
            namespace=ref.namespace,
            pod_name=ref.name,
            pod_uid=ref.uid,
            reason="MemoryShrinkFailed",
            note=f"in-place memory shrink refused (HTTP {status}): {str(exc)[:200]}",
            event_type="Warning",
        )
        log.warning("shrinking %s/%s failed: %s", ref.namespace, ref.name, exc)
    finally:
        events.put(report)
