"""The pure scheduling core: no Kubernetes client, no threads, no clock, no global randomness.

Modules, in dependency order: ``errors``; ``resources`` (amounts, quantity parsing) and
``podrequest`` (effective pod request); ``constraints`` (taints, tolerations, node selectors);
``cluster`` (nodes, pods, snapshot, assume/forget cache); ``workflow`` (tasks, DAGs, ranks);
``decisions``; ``queue``; ``context``; ``feasibility`` and ``nodetable`` (vectorised fit);
``interfaces`` (policy Protocols); ``cycle`` (``run_cycle``).
"""
