"""The models directory on disk: the store, careful file helpers, staging files, locks, and the platform layer.

May import ``core`` only.
"""
