"""Online memory predictors for wfsched: pure code (no I/O, no clock, no global randomness).

Layout: ``base`` (the ``MemoryPredictor`` contract), one module per model (``lr``, ``lr2``,
``mean``, ``last``, ``ponder``, ``const``, ``poly``, ``envelope``; each with ``NAME``,
``ALIASES``, ``SYNTAX``, ``Args``, ``parse_args`` and ``make``), ``offsets`` (margins and the
wrapper every predictor runs in), ``grammar`` (spec strings), ``allocation`` (prediction to
request), and the offline evaluation: ``wfformat`` (the one WfFormat reader, shared with the
simulator), ``traces`` (runs to replay) and ``replay`` (protocol, metrics).
Names are resolved in ``scheduler.registry``; see README.md for the table.
"""
