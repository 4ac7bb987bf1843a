"""Ranking (prioritization) policies: each orders the pending queue once per cycle.

One module per policy with ``NAME``, ``ALIASES``, an optional ``Args`` dataclass and
``make(args) -> RankingPolicy``; ``scheduler.registry`` lists them. Sort keys follow
cws-semantics 3.2 exactly and are ascending (smaller first), applied with a stable sort over the
queue's persistent order.
"""
