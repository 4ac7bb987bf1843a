"""Scheduling policies: rankings order pending tasks, assignments pick a node for each.

``policies.ranking`` and ``policies.assignment`` hold one module per policy with ``NAME``,
``ALIASES`` and ``make``; ``scheduler.registry`` is where they are listed.
"""
