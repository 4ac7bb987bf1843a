"""The scheduling core's small error hierarchy.

Every error the pure core raises derives from :class:`CoreError`; the shell maps them to HTTP
statuses or log lines. Errors that describe bad user input also derive from ``ValueError`` so
callers that only know the standard library still catch them.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base class of every error raised by ``scheduler.core``."""


class QuantityError(CoreError, ValueError):
    """A Kubernetes resource quantity is malformed, negative or out of range."""


class DagError(CoreError, ValueError):
    """A workflow DAG operation refers to something unknown or is otherwise invalid."""


class DagCycleError(DagError):
    """Adding edges would make a workflow DAG cyclic; the DAG is left unchanged."""


class CacheError(CoreError):
    """The cluster cache's assume/confirm/forget ledger was used out of order."""


class PolicyContractError(CoreError):
    """A policy broke its written contract (for example, a ranking that is not a permutation)."""
