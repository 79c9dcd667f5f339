"""Helpers for the reliability suite (``tests/test_reliability_*.py``).

* :mod:`tests.faultkit.invariants` -- the store invariants, checked after every fault, kill and
  hostile input (``store_problems`` / ``assert_store_ok``), and ``tree`` for byte comparisons.
* :mod:`tests.faultkit.cli` -- run ``python -m ollama_seed`` as a subprocess, and kill it with
  SIGKILL after a given delay (``pull_then_kill``).
* :mod:`tests.faultkit.tls` -- a throw-away CA and a server certificate for 127.0.0.1/localhost.
* :mod:`tests.faultkit.asgi` -- the in-process :class:`~tests.servers.fake_registry.FakeRegistry`
  served over a real socket (plain or TLS) by uvicorn in a thread.
* :mod:`tests.faultkit.smallfs` -- a size-limited tmpfs mounted under a test's tmp_path (root only).
"""
