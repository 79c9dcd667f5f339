"""The read-only ``/v2/`` registry over a store, its pull-through cache, ``serve``, and ``push``.

May import ``core``, ``store``, ``wire`` and ``pulling``.
"""
