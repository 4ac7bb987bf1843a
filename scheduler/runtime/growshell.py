"""Grow in place, the I/O side: send one resize, tell the user, report back to the loop.

The loop runs :func:`resize` on its side pool for each ``GrowMemory`` the state machine decided
(``scheduler.runtime.grow``), and :func:`notify` for each ``GrowNotice``. Every resize ends in
exactly one ``GrowReported`` on the loop's event queue, and one Event on the pod:
``MemoryGrown`` (Normal) or ``MemoryGrowFailed`` (Warning).
"""

from __future__ import annotations

import logging
import queue
from typing import Any, Protocol

from scheduler.kube import errors as kube_errors
from scheduler.runtime import eventrecorder
from scheduler.runtime import grow as grow_mod

log = logging.getLogger(__name__)

MIB = 1 << 20


class Resizer(Protocol):
    """The one API call a grow makes (``scheduler.kube.client.KubeClient.resize_pod``)."""

    def resize_pod(self, namespace: str, name: str, containers: list[dict[str, Any]]) -> Any:
        """PATCH ``pods/resize`` with the given container resources."""


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
