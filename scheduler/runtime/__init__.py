"""The daemon's runtime: what ``wfsched run`` executes, and nothing of the developer tooling.

- ``state``: the scheduler as a pure state machine (stimuli in, instructions out);
- ``loop``: the decision thread and the effect runners around the state machine;
- ``daemon``: the composition root (client, informers, loop, leader election, HTTP servers);
- ``workflows``, ``memory``: workflow grouping and the memory model the state machine owns;
- ``settings``, ``metrics``, ``logs``, ``eventrecorder``, ``httpserver``, ``leaderpod``:
  configuration, Prometheus metrics, logging, the Event sender, the HTTP servers and the
  leader's pod label.

``scheduler.cli`` parses command lines; ``scheduler.devtools`` (local control plane, replay,
simulator) is never imported from here (an import-linter contract checks it).
"""
