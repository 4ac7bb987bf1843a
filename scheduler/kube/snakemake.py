"""Recognising the pods of Snakemake's Kubernetes executor (pure, no I/O).

Snakemake (``snakemake-executor-plugin-kubernetes``) submits each job as a Job named
``snakejob-<uuid>`` whose single container runs ``python -m snakemake ... --allowed-rules
<rule> ...``. It puts no workflow labels on the Job or its pods, so wfsched reads them from
what Snakemake does put there:

* the rule (the step): the ``--allowed-rules`` argument of the job's command;
* the invocation (the run): the name of the Secret the executor creates once per invocation
  (a fresh UUID) and that every job's environment refers to. The executor refers to it only
  when the workflow passes environment variables to its jobs (``envvars:`` in the Snakefile or
  ``--envvars``); without one, jobs fall back to one run per Snakefile and namespace;
* the Snakefile (the workflow name, for learning across runs): the checksum of the source
  archive the job deploys (``--deploy-sources <archive> <checksum>``), the same for every
  invocation of unchanged sources.

The results are added to the pod's labels as wfsched sees them (``snakemake.wfsched.io/run``,
``.../rule``, ``.../workflow``); labels the pod itself carries win.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.kube import keys

CONTAINER_FIELDS = ("args", "command", "env")
"""Container fields the informers keep for Snakemake pods (besides the resource fields)."""

_RULE = re.compile(r"--allowed-rules\s+'?([A-Za-z_][A-Za-z0-9_]*)")
_SOURCES = re.compile(r"--deploy-sources\s+\S+\s+'?([0-9a-f]{16,128})")
_MARKER = re.compile(r"-m\s+snakemake\s")
_WORKFLOW_ID_LENGTH = 16


def is_snakemake_pod(labels: Mapping[str, Any]) -> bool:
    """Whether a pod's labels say it belongs to a Job of Snakemake's Kubernetes executor."""
    job = labels.get(keys.JOB_NAME_LABEL)
    return isinstance(job, str) and job.startswith(keys.SNAKEMAKE_JOB_PREFIX)


def derived_labels(containers: Sequence[Any]) -> dict[str, str]:
    """The run, rule and workflow labels read from a Snakemake job pod's first container.

    Returns ``{}`` when the container does not run Snakemake or names no rule; malformed
    fields are skipped, never raised.
    """
    if not containers or not isinstance(containers[0], Mapping):
        return {}
    container = containers[0]
    words = [
        w
        for field in ("command", "args")
        if isinstance(container.get(field), list)
        for w in container[field]
        if isinstance(w, str)
    ]
    text = " ".join(words) + " "
    rule = _RULE.search(text)
    if not _MARKER.search(text) or rule is None:
        return {}
    out = {keys.SNAKEMAKE_RULE_LABEL: rule.group(1)}
    sources = _SOURCES.search(text)
    workflow = f"snakemake-{sources.group(1)[:_WORKFLOW_ID_LENGTH]}" if sources else ""
    if workflow:
        out[keys.SNAKEMAKE_WORKFLOW_LABEL] = workflow
    out[keys.SNAKEMAKE_RUN_LABEL] = _secret_ref(container.get("env")) or workflow or "snakemake"
    return out


def _secret_ref(env: Any) -> str:
    """The Secret the container's environment refers to first (``""`` when none)."""
    if not isinstance(env, list):
        return ""
    for item in env:
        ref = item.get("valueFrom") if isinstance(item, Mapping) else None
        ref = ref.get("secretKeyRef") if isinstance(ref, Mapping) else None
        name = ref.get("name") if isinstance(ref, Mapping) else None
        if isinstance(name, str) and name:
            return name
    return ""
