"""The informer's cache logic as pure functions: keys, watch-event application, relist diff.

Everything here is deterministic and free of I/O, threads and clocks (the backoff takes its
random source as an argument), so ``Informer`` is a thin shell around it and the rules are
unit-tested directly:

- keys are ``namespace/name`` (``name`` for cluster-scoped objects); the uid tells two
  incarnations of one key apart;
- watch event types are normalised against the cache (first sighting ``ADDED``, then
  ``MODIFIED``; a new uid under a known key is ``DELETED`` old + ``ADDED`` new);
- after a re-LIST, the diff emits ``DELETED`` (last known state) for what vanished, then
  ``ADDED``/``MODIFIED`` for what is new or has a different resourceVersion;
- the cache may keep a smaller form of each object than the one emitted (``store``): events
  carry what was received, and only deletions of cached objects carry the stored form, so
  the stored form must keep the identity (name, namespace, uid, resourceVersion).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

JsonDict = dict[str, Any]
Store = Callable[[JsonDict], JsonDict]
"""Turns a received object into the form the cache keeps (identity always kept)."""

ADDED: Final = "ADDED"
MODIFIED: Final = "MODIFIED"
DELETED: Final = "DELETED"


def object_key(obj: Mapping[str, Any]) -> str:
    """Return ``namespace/name`` (or ``name`` for cluster-scoped objects).

    Raises:
        ValueError: the object has no ``metadata.name``.
    """
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise ValueError("object without metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("object without metadata.name")
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name


def meta_field(obj: Mapping[str, Any], field: str) -> str:
    """Return ``metadata.<field>`` when it is a string, else ``""``."""
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        value = meta.get(field)
        if isinstance(value, str):
            return value
    return ""


def diff_relist(
    cache: Mapping[str, JsonDict],
    fresh: Iterable[JsonDict],
    *,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    store: Store | None = None,
) -> tuple[dict[str, JsonDict], list[tuple[str, JsonDict]]]:
    """Compare the cache with a fresh LIST and return the new cache and the events to emit.

    Pure. Events come in this order: ``DELETED`` for every cached key missing from the list
    (carrying the last known object) and for keys whose uid changed (the old object), then,
    in list order, ``ADDED`` for new keys and new uids, and ``MODIFIED`` for objects whose
    resourceVersion changed. Unchanged objects produce nothing. Items without a name, and
    items ``keep`` rejects, are treated as absent.

    Args:
        cache: ``namespace/name`` → last known object (in its stored form).
        fresh: The LIST's items.
        keep: Optional filter; rejected objects count as absent.
        store: Optional; the new cache keeps ``store(item)`` instead of the item.

    Returns:
        ``(new_cache, [(event_type, obj), ...])``.
    """
    listed: dict[str, JsonDict] = {}
    for obj in fresh:
        try:
            key = object_key(obj)
        except ValueError:
            continue
        if keep is not None and not keep(obj):
            continue
        listed[key] = obj
    deletions: list[tuple[str, JsonDict]] = []
    changes: list[tuple[str, JsonDict]] = []
    for key, old in cache.items():
        current = listed.get(key)
        if current is None or meta_field(current, "uid") != meta_field(old, "uid"):
            deletions.append((DELETED, old))
    for key, obj in listed.items():
        old_obj = cache.get(key)
        if old_obj is None or meta_field(obj, "uid") != meta_field(old_obj, "uid"):
            changes.append((ADDED, obj))
        elif meta_field(obj, "resourceVersion") != meta_field(old_obj, "resourceVersion"):
            changes.append((MODIFIED, obj))
    new_cache = listed if store is None else {key: store(obj) for key, obj in listed.items()}
    return new_cache, deletions + changes


def apply_watch_event(
    cache: dict[str, JsonDict],
    event_type: str,
    obj: JsonDict,
    *,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    store: Store | None = None,
) -> list[tuple[str, JsonDict]]:
    """Apply one watch event to the cache (in place) and return the events to emit.

    Types are normalised against the cache (first sighting ``ADDED``, then ``MODIFIED``); a
    new uid under a known key yields ``DELETED`` (old) then ``ADDED`` (new); an object that
    stops passing ``keep`` yields ``DELETED``; a ``DELETED`` for an unknown object that
    ``keep`` rejects yields nothing. The cache keeps ``store(obj)`` when ``store`` is given.

    Raises:
        ValueError: the object has no name.
    """
    key = object_key(obj)
    old = cache.get(key)
    if event_type == DELETED:
        uid = meta_field(obj, "uid")
        if old is not None and uid and meta_field(old, "uid") != uid:
            # A delete for a different incarnation: drop ours (it is gone too, or will be).
            del cache[key]
            return [(DELETED, old)]
        cache.pop(key, None)
        if old is None and keep is not None and not keep(obj):
            return []
        return [(DELETED, obj)]
    if keep is not None and not keep(obj):
        if old is None:
            return []
        del cache[key]
        return [(DELETED, obj)]
    cache[key] = obj if store is None else store(obj)
    if old is None:
        return [(ADDED, obj)]
    if meta_field(old, "uid") != meta_field(obj, "uid"):
        return [(DELETED, old), (ADDED, obj)]
    return [(MODIFIED, obj)]


def full_jitter_backoff(failures: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Return a sleep in ``[0, min(cap, base * 2**(failures-1))]`` (AWS "full jitter")."""
    if failures <= 0:
        return 0.0
    ceiling = min(cap_s, base_s * (2.0 ** min(failures - 1, 30)))
    return rng.uniform(0.0, ceiling)
