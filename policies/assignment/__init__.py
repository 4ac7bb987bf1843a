"""Node-assignment policies: each picks one feasible node per task, in ranked order.

One module per policy with ``NAME``, ``ALIASES``, an optional ``Args`` dataclass and
``make(args) -> AssignmentPolicy``; ``scheduler.registry`` lists them. ``roundrobin``,
``random`` and ``fair`` reproduce CWS (cws-semantics 4); ``binpack``, ``balanced`` and
``loadaware`` are wfsched additions and treat untolerated PreferNoSchedule taints as a penalty.
"""
