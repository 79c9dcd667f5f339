"""The read-only ``/v2/`` registry over a store, its pull-through cache and the site layer in front
(logins, access rules, metrics, a bounded cache), ``serve``, and ``push``.

May import ``core``, ``store``, ``wire`` and ``pulling``.
"""
