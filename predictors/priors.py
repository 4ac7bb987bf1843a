"""Priors for cold starts: peaks of the same step seen in other runs, as ``base.Prior`` seeds.

Two sources (``base.PriorSource``):

- ``RUN``: the same process (full qualified name) in earlier runs of the same workflow;
- ``TOOL``: the same tool in other pipelines. A tool is the process's short name (the last
  ``:``-separated part of the qualified name, e.g. ``SAMTOOLS_SORT``) together with its
  container image without the tag (``quay.io/biocontainers/samtools``): nf-core modules are
  shared between pipelines under the same name and image, while one image serves several
  commands with very different memory use. Without a recorded image the short name alone is
  the key.

A :class:`PriorBook` collects peaks from runs and answers the priors for a task; the replay
calls it once per process (``replay.Seeds``). Pure: the caller decides which runs go in, which
is what keeps a held-out workflow out of its own priors.
"""

from __future__ import annotations

from collections import defaultdict

from predictors import base, traces


def tool_key(task: traces.Task) -> tuple[str, str]:
    """Return (process short name, container image without tag) for a task."""
    return tool_of(task.process, task.container)


def tool_of(process: str, image: str) -> tuple[str, str]:
    """Return (short name, image without tag or digest) for a process name and an image."""
    short = process.rsplit(":", 1)[-1]
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image = image[:colon]
    return short, image


class PriorBook:
    """Peaks by tool and by process, from the runs added so far."""

    def __init__(self) -> None:
        self._by_tool: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._by_process: dict[str, list[float]] = defaultdict(list)

    def add_run(self, run: traces.Run, *, tools: bool = True, processes: bool = True) -> None:
        """Add the valid peaks of a run to the tool and/or the process index."""
        for task in run.tasks:
            if task.peak_bytes is None or task.peak_bytes <= 0:
                continue
            if tools:
                self._by_tool[tool_key(task)].append(float(task.peak_bytes))
            if processes:
                self._by_process[task.process].append(float(task.peak_bytes))

    def priors(self, task: traces.Task) -> list[base.Prior]:
        """Return the priors for the process of ``task``: tool first, then run (most specific)."""
        found: list[base.Prior] = []
        tool = self._by_tool.get(tool_key(task))
        if tool:
            found.append(base.Prior(source=base.PriorSource.TOOL, peaks=tuple(tool)))
        same = self._by_process.get(task.process)
        if same:
            found.append(base.Prior(source=base.PriorSource.RUN, peaks=tuple(same)))
        return found
