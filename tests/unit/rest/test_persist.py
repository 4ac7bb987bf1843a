"""The CWS state store and its writer with an in-memory ConfigMap API (pure unit tests)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from scheduler.kube import errors
from scheduler.rest import persist

NS = "wfsched-system"


class FakeConfigMaps:
    """ConfigMaps in a dict, with failures on demand."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.fail_puts = 0
        self.puts: list[str] = []
        self.lock = threading.Lock()

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
        with self.lock:
            if self.fail_puts:
                self.fail_puts -= 1
                raise errors.ApiError("injected", http_status=500)
            self.puts.append(name)
            self.items[name] = {
                "metadata": {
                    "name": name,
                    "labels": dict(labels),
                    "annotations": dict(annotations or {}),
                },
                "binaryData": {
                    k: base64.b64encode(v).decode() for k, v in (binary_data or {}).items()
                },
            }

    def delete_configmap(self, namespace: str, name: str) -> bool:
        with self.lock:
            return self.items.pop(name, None) is not None

    def list_objects(
        self, kind: str, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        wanted = dict(part.split("=", 1) for part in (label_selector or "").split(",") if part)
        with self.lock:
            found = [
                item
                for item in self.items.values()
                if wanted.items() <= item["metadata"]["labels"].items()
            ]
        return found, "1"


def big_document(tasks: int) -> dict[str, Any]:
    # Incompressible enough to need several parts at a small part size.
    return {"tasks": [[i, f"{i * 7919:x}" * 3] for i in range(tasks)]}


def test_a_large_document_is_split_and_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persist, "PART_BYTES", 2000)
    kube = FakeConfigMaps()
    store = persist.StateStore(kube, namespace=NS, owner="wfsched")
    document = big_document(3000)
    store.write("run1", document)
    parts = [n for n in kube.items if n.startswith("wfsched-cws-")]
    assert len(parts) > 3
    assert kube.puts[-1].endswith("-a0")  # part 0, the head, is written last
    assert persist.StateStore(kube, namespace=NS, owner="wfsched").load() == [("run1", document)]
    # The next write goes to the other slot; the one after that shrinks slot a to one part.
    store.write("run1", {"tasks": [1]})
    assert len([n for n in kube.items if n.startswith("wfsched-cws-")]) == len(parts) + 1
    store.write("run1", {"tasks": []})
    assert len([n for n in kube.items if n.startswith("wfsched-cws-")]) == 2
    assert store.load() == [("run1", {"tasks": []})]


def test_a_half_written_generation_falls_back_to_the_last_complete_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(persist, "PART_BYTES", 2000)
    kube = FakeConfigMaps()
    store = persist.StateStore(kube, namespace=NS, owner="wfsched")
    old = big_document(1000)
    store.write("run1", old)
    kube.fail_puts = 0
    # A writer killed after its first part: part 1 of a newer generation, no new head.
    writes = len(kube.puts)
    kube.fail_puts = 0
    newer = big_document(1500)
    original_put = kube.put_configmap

    def dying_put(*args: Any, **kwargs: Any) -> Any:
        if len(kube.puts) > writes:
            raise errors.ApiError("killed", http_status=0)
        return original_put(*args, **kwargs)

    kube.put_configmap = dying_put  # type: ignore[method-assign]
    with pytest.raises(errors.ApiError):
        store.write("run1", newer)
    assert persist.StateStore(kube, namespace=NS, owner="wfsched").load() == [("run1", old)]


def test_damaged_and_foreign_documents_are_skipped() -> None:
    kube = FakeConfigMaps()
    store = persist.StateStore(kube, namespace=NS, owner="wfsched")
    store.write("good", {"a": 1})
    store.write("bad", {"b": 2})
    bad = next(
        item
        for item in kube.items.values()
        if item["metadata"]["annotations"]["wfsched.io/cws-execution"] == "bad"
    )
    bad["binaryData"]["execution.json.gz"] = base64.b64encode(b"not gzip").decode()
    persist.StateStore(kube, namespace=NS, owner="other-release").write("theirs", {"c": 3})
    assert store.load() == [("good", {"a": 1})]
    store.remove("good")

    def executions() -> set[str]:
        return {
            i["metadata"]["annotations"]["wfsched.io/cws-execution"] for i in kube.items.values()
        }

    assert executions() == {"bad", "theirs"}  # only its own ConfigMaps went
    assert store.load() == []


def test_the_writer_keeps_the_newest_change_and_retries_failures() -> None:
    kube = FakeConfigMaps()
    store = persist.StateStore(kube, namespace=NS, owner="wfsched")
    writer = persist.Persister(store)
    kube.fail_puts = 1
    writer.start()
    try:
        assert writer.submit({"run1": {"v": 1}}, set()).result(timeout=5) is False
        done = writer.submit({"run1": {"v": 2}}, set())
        assert done.result(timeout=10) is True
        assert store.load() == [("run1", {"v": 2})]
        assert writer.submit({}, {"run1"}).result(timeout=5) is True
        assert store.load() == []
        assert writer.failures == 1
    finally:
        writer.stop()
