"""Logging set-up: stdlib ``logging`` rendered by structlog, JSON by default.

Modules log with ``logging.getLogger(__name__)`` and put their key-value context in ``extra``
(``cycle_id``, ``pod``, ``node``, ``run``, ``task``); ``configure`` turns every record into one
JSON object (or a readable console line) with those keys, a timestamp and the level.
Secrets never reach the log: values of keys that look like credentials are masked.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("token", "password", "secret", "authorization", "bearer")


def _mask_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


def configure(*, fmt: str = "json", level: str = "info") -> None:
    """Route all logging through structlog; ``fmt`` is ``json`` or ``console``."""
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The client libraries are chatty at INFO.
    for noisy in ("urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
