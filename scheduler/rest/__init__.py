"""The CWS-compatible REST API (the Common Workflow Scheduling Interface).

Modules: ``api`` (routes, checks), ``bridge`` (to the loop thread), ``schemas`` and ``openapi``
(one source for validation and docs), ``server`` (HTTP), ``persist`` (executions kept in
ConfigMaps for the next leader).

See docs/rest-api.md for the routes, the compatibility with CWS and nf-cws, and what differs.
"""
