"""The bundle formats, pure (no I/O): our index and member names, tar headers, ollamazip metadata, OCI layouts.

``docs/bundle-format.md`` is the specification of ours; the others are read as their own tools write them.
"""
