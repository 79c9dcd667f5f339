"""HTTP and the async runtime: the registry client, blob transfers (httpx and the direct path), TLS,
throttling, credentials, signing.

May import ``core`` and ``store``.
"""
