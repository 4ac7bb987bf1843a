"""wfsched: a workflow-aware secondary scheduler for Kubernetes.

The distribution is named ``wfsched``; its import packages are ``scheduler`` (the daemon, the
pure scheduling core in ``scheduler.core`` and the API-server adapter in ``scheduler.kube``),
``policies`` (ranking and node-assignment strategies) and ``predictors`` (memory predictors).
"""

__version__ = "0.1.0"
