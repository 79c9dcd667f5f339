"""Bundles for air-gapped hosts: export, import, inspect and verify; tar, zstd, split parts, OCI image layouts.

May import ``core``, ``store``, ``wire`` and ``pulling``.
"""
