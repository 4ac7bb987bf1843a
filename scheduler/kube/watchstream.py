"""One open WATCH response, read line by line into raw event dicts.

kube-apiserver streams a watch as chunked HTTP/1.1 with one JSON event per line. This module
splits the urllib3 byte stream into lines without quadratic copying, decodes each line once,
turns ``ERROR`` events into classified ``ApiError``s (``GoneError`` for 410 Expired), and lets
another thread stop a blocked read (``close()`` shuts the socket down).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping

import urllib3

from scheduler.kube import errors
from scheduler.kube.resources import JsonDict

log = logging.getLogger(__name__)


class WatchStream:
    """One open watch response; iterate for events, ``close()`` from any thread to stop.

    Iteration yields each event as a dict ``{"type": ..., "object": {...}}`` (``ADDED``,
    ``MODIFIED``, ``DELETED``, ``BOOKMARK``) and ends when the server closes the stream
    (its ``timeoutSeconds`` elapsed). An ``ERROR`` event is raised as the matching
    ``ApiError`` (``GoneError`` for 410 Expired/Gone). Lines that are not JSON objects are
    skipped, logged and counted in ``malformed``; a JSON object of the wrong shape is
    yielded as is (the consumer validates). Transport failures raise ``ApiConnectionError``
    or ``ApiTimeoutError`` — except after ``close()``, when iteration just ends.
    """

    def __init__(self, response: urllib3.BaseHTTPResponse, *, what: str) -> None:
        self._response = response
        self._what = what
        self._closed = False
        self.malformed = 0
        """Lines skipped because they were not JSON objects."""

    @property
    def closed(self) -> bool:
        """``close()`` was called."""
        return self._closed

    def close(self) -> None:
        """Stop the stream; safe from another thread while one is blocked reading."""
        if self._closed:
            return
        self._closed = True
        shutdown = getattr(self._response, "shutdown", None)
        if callable(shutdown):
            with contextlib.suppress(Exception):
                shutdown()  # unblocks a read in progress in another thread

    def _lines(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        for chunk in self._response.stream(65536, decode_content=True):
            if not chunk:
                continue
            start = 0
            while True:
                newline = chunk.find(b"\n", start)
                if newline < 0:
                    if start < len(chunk):
                        pending.append(chunk[start:])
                    break
                piece = chunk[start:newline]
                start = newline + 1
                if pending:
                    pending.append(piece)
                    line = b"".join(pending)
                    pending.clear()
                else:
                    line = piece
                if line.strip():
                    yield line
        tail = b"".join(pending)
        if tail.strip():
            yield tail

    def __iter__(self) -> Iterator[JsonDict]:
        clean = False
        try:
            for line in self._lines():
                if self._closed:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if not isinstance(event, dict):
                    self.malformed += 1
                    log.warning(
                        "malformed watch line skipped",
                        extra={"watch": self._what, "line": line[:200].decode(errors="replace")},
                    )
                    continue
                if event.get("type") == "ERROR":
                    obj = event.get("object")
                    status = obj if isinstance(obj, Mapping) else {}
                    raise errors.from_status(status)
                yield event
            clean = True
        except errors.ApiError:
            raise
        except Exception as exc:
            if self._closed:
                return
            raise errors.from_exception(exc) from exc
        finally:
            self._finish(clean and not self._closed)

    def _finish(self, clean: bool) -> None:
        with contextlib.suppress(Exception):
            if not clean:
                self._response.close()
            self._response.release_conn()
