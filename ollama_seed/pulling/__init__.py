"""A pull session (manifest, missing blobs, manifest last) and the ``pull``/``apull`` API.

May import ``core``, ``store`` and ``wire``.
"""
