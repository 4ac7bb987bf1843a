"""CWS executions kept in ConfigMaps, so that a new leader continues the runs of the old one.

Data flow::

    loop thread:   CwsState.take_changes() ──(documents, removed names)──► Persister.submit
    writer thread: Persister ──► StateStore.write / remove ──► ConfigMaps (lease namespace)
    new leader:    StateStore.load() ──► CwsState.restore(document)  (loop thread)

One execution is one gzip-compressed JSON document (``scheduler.cws.snapshot``), stored in
``binaryData`` of one or more ConfigMaps named ``<owner>-cws-<digest>-<slot><index>``, where
``owner`` is the Lease's name, ``digest`` a hash of the execution's name and ``slot`` ``a`` or
``b``: writes alternate between the two slots, so a write only ever overwrites the older of
the two documents. A document larger than :data:`PART_BYTES` is split; every part carries
``<index>/<count>/<generation>``, parts ``1..count-1`` are written before part 0, and the newest
generation whose parts are all present is restored: a writer killed half-way leaves the
previous complete document, never a mixture. Parts beyond a slot's new count are deleted.

Only the leader writes. The writer thread coalesces: for each execution only the newest
document (or its removal) is written. A write that fails is retried on the next round, unless a
newer change replaced it. :meth:`Persister.submit` returns a future, so a caller that must know
its change is stored (execution registered or deleted) can wait for it.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import gzip
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scheduler.kube import keys

log = logging.getLogger(__name__)

PART_BYTES = 700_000
"""Compressed bytes per ConfigMap (base64 makes ~930 KB of the 1 MiB object limit)."""
DATA_KEY = "execution.json.gz"
"""The ``binaryData`` key of a part."""
_RETRY_S = 2.0


class ConfigMapApi(Protocol):
    """The calls the store makes (``scheduler.kube.client.KubeClient``)."""

    def put_configmap(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        binary_data: Mapping[str, bytes] | None = None,
    ) -> Any:
        """Create or update a ConfigMap."""

    def delete_configmap(self, namespace: str, name: str) -> bool:
        """Delete a ConfigMap (False when absent)."""

    def list_objects(
        self, kind: str, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """LIST objects of a kind."""


def digest(execution: str) -> str:
    """A short, label-safe digest of an execution name."""
    return hashlib.sha256(execution.encode()).hexdigest()[:16]


@dataclass(slots=True)
class _Slots:
    """Where an execution's next document goes, and what each slot holds."""

    next_slot: int = 0
    parts: list[int] = field(default_factory=lambda: [0, 0])
    generation: int = 0


class StateStore:
    """Reads and writes execution documents as ConfigMaps (blocking API calls).

    Each execution has two slots, ``a`` and ``b``, written in turn: a write overwrites only the
    older document, so a writer that dies half-way leaves the newer complete one restorable.
    """

    def __init__(self, kube: ConfigMapApi, *, namespace: str, owner: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.owner = owner
        self._slots: dict[str, _Slots] = {}

    def _name(self, execution: str, slot: int, index: int) -> str:
        return f"{self.owner}-cws-{digest(execution)}-{'ab'[slot]}{index}"

    def _labels(self, execution: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "wfsched",
            "app.kubernetes.io/component": "cws-state",
            keys.CWS_STATE_LABEL: self.owner,
            keys.CWS_EXECUTION_LABEL: digest(execution),
        }

    def write(self, execution: str, document: Mapping[str, Any]) -> int:
        """Store ``document`` for ``execution``; return its compressed size in bytes.

        Raises:
            errors.ApiError: a write failed (the previous document stays restorable).
        """
        raw = gzip.compress(json.dumps(document, separators=(",", ":")).encode(), mtime=0)
        chunks = [raw[i : i + PART_BYTES] for i in range(0, len(raw), PART_BYTES)] or [b""]
        slots = self._slots.setdefault(execution, _Slots())
        slot = slots.next_slot
        generation = max(time.time_ns(), slots.generation + 1)
        labels = self._labels(execution)
        for index in [*range(1, len(chunks)), 0]:
            self.kube.put_configmap(
                self.namespace,
                self._name(execution, slot, index),
                {},
                labels=labels,
                annotations={
                    keys.CWS_EXECUTION_ANNOTATION: execution,
                    keys.CWS_PART_ANNOTATION: f"{index}/{len(chunks)}/{generation}",
                },
                binary_data={DATA_KEY: chunks[index]},
            )
        for index in range(len(chunks), slots.parts[slot]):
            self.kube.delete_configmap(self.namespace, self._name(execution, slot, index))
        slots.parts[slot] = len(chunks)
        slots.next_slot = 1 - slot
        slots.generation = generation
        return len(raw)

    def remove(self, execution: str) -> None:
        """Delete every part of ``execution``.

        Raises:
            errors.ApiError: the list or a delete failed.
        """
        selector = (
            f"{keys.CWS_STATE_LABEL}={self.owner},{keys.CWS_EXECUTION_LABEL}={digest(execution)}"
        )
        items, _ = self.kube.list_objects(
            "configmaps", namespace=self.namespace, label_selector=selector
        )
        for item in items:
            name = str((item.get("metadata") or {}).get("name") or "")
            if name:
                self.kube.delete_configmap(self.namespace, name)
        self._slots.pop(execution, None)

    def load(self) -> list[tuple[str, Any]]:
        """Return ``(execution, document)`` for every complete stored execution.

        A damaged execution (missing part, bad data) is logged and skipped.

        Raises:
            errors.ApiError: the list failed.
        """
        items, _ = self.kube.list_objects(
            "configmaps",
            namespace=self.namespace,
            label_selector=f"{keys.CWS_STATE_LABEL}={self.owner}",
        )
        parts: dict[str, dict[tuple[int, int], _Part]] = {}
        for item in items:
            meta = item.get("metadata") or {}
            notes = meta.get("annotations") or {}
            name = str(meta.get("name") or "")
            try:
                index_text, count, generation_text = str(notes.get(keys.CWS_PART_ANNOTATION)).split(
                    "/"
                )
                part = _Part(
                    slot="ab".index(name.rsplit("-", 1)[1][0]),
                    count=int(count),
                    data=_b64((item.get("binaryData") or {}).get(DATA_KEY, "")),
                )
                execution = str(notes[keys.CWS_EXECUTION_ANNOTATION])
                parts.setdefault(execution, {})[(int(generation_text), int(index_text))] = part
            except (ValueError, TypeError, KeyError, IndexError, binascii.Error):
                log.warning("ignoring a malformed CWS state ConfigMap", extra={"name": name})
        loaded: list[tuple[str, Any]] = []
        for execution, found in sorted(parts.items()):
            slots = self._slots.setdefault(execution, _Slots())
            for (generation, index), part in found.items():
                slots.parts[part.slot] = max(slots.parts[part.slot], index + 1)
                slots.generation = max(slots.generation, generation)
            try:
                slot, document = _assemble(found)
            except ValueError as exc:
                log.error(
                    "stored CWS execution cannot be restored: %s",
                    exc,
                    extra={"execution": execution},
                )
                continue
            slots.next_slot = 1 - slot  # keep the document restored from
            loaded.append((execution, document))
        return loaded


@dataclass(frozen=True, slots=True)
class _Part:
    slot: int
    count: int
    data: bytes


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("binaryData is not text")
    return base64.b64decode(text, validate=True)


def _assemble(found: Mapping[tuple[int, int], _Part]) -> tuple[int, Any]:
    """Return ``(slot, document)`` of the newest generation whose parts are all present."""
    heads = sorted((gen for gen, index in found if index == 0), reverse=True)
    for generation in heads:
        head = found[(generation, 0)]
        chunks = [found.get((generation, i)) for i in range(head.count)]
        if all(chunk is not None for chunk in chunks):
            raw = b"".join(chunk.data for chunk in chunks if chunk is not None)
            try:
                return head.slot, json.loads(gzip.decompress(raw))
            except (OSError, EOFError, ValueError) as exc:
                raise ValueError(f"undecodable document ({type(exc).__name__})") from None
    raise ValueError("no complete set of parts")


class Persister:
    """Writes submitted changes on its own thread, newest change per execution; see the module."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._lock = threading.Condition()
        self._pending: dict[str, Mapping[str, Any] | None] = {}
        self._waiters: list[tuple[set[str], concurrent.futures.Future[bool]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="wfsched-cws-store", daemon=True)
        self.writes = 0
        self.failures = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is pending (within ``timeout_s``), then stop."""
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._thread.join(timeout=timeout_s)

    def submit(
        self, documents: Mapping[str, Mapping[str, Any]], removed: set[str]
    ) -> concurrent.futures.Future[bool]:
        """Queue documents to write and executions to remove (thread-safe).

        Returns:
            A future resolved once all of them are written: ``True``, or ``False`` when one
            failed (it is retried later).
        """
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        names = set(documents) | set(removed)
        with self._lock:
            self._pending.update(documents)
            self._pending.update(dict.fromkeys(removed))
            if names:
                self._waiters.append((names, future))
            else:
                future.set_result(True)
            self._lock.notify_all()
        return future

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stop:
                    self._lock.wait()
                if not self._pending and self._stop:
                    return
                batch, self._pending = self._pending, {}
                waiters, self._waiters = self._waiters, []
            failed = self._write(batch)
            with self._lock:
                for name in failed:
                    self._pending.setdefault(name, batch[name])  # unless replaced meanwhile
            for names, future in waiters:
                future.set_result(not (names & failed))
            if failed:
                with self._lock:
                    if not self._stop:
                        self._lock.wait(_RETRY_S)

    def _write(self, batch: Mapping[str, Mapping[str, Any] | None]) -> set[str]:
        failed: set[str] = set()
        for name, document in batch.items():
            try:
                if document is None:
                    self.store.remove(name)
                else:
                    size = self.store.write(name, document)
                    log.debug("CWS execution stored", extra={"execution": name, "bytes": size})
                self.writes += 1
            except Exception as exc:  # an API failure must not end the writer; retried
                self.failures += 1
                failed.add(name)
                log.warning(
                    "storing CWS execution failed; retrying: %s",
                    str(exc)[:200],
                    extra={"execution": name},
                )
        return failed
