"""Loopback-only test and benchmark servers for ollama-seed.

* :mod:`tests.servers.registry` -- a real Docker Distribution registry (the Debian
  ``docker-registry`` binary) as a subprocess, plus a seeder for Ollama-style models.
* :mod:`tests.servers.model` -- deterministic Ollama-style model builder (``make_model``).
* :mod:`tests.servers.proxy` -- an asyncio HTTP/1.1 reverse proxy for bandwidth shaping,
  latency and fault injection.
"""
