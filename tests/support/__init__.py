"""Everything the tests share that is not a fixture: servers, fault injection, builders, helpers.

Servers (loopback only; the benchmarks use them too):

* :mod:`tests.support.registry` -- a real Docker Distribution registry (the Debian ``docker-registry``
  binary) as a subprocess; :mod:`tests.support.seed` pushes Ollama-style models into it.
* :mod:`tests.support.fake_registry` -- an in-process ASGI registry with faults and bearer tokens;
  :mod:`tests.support.asgi` serves it over a real socket (plain or TLS) by uvicorn in a thread.
* :mod:`tests.support.fake_ollama` -- an Ollama server stand-in (``/api/tags``, ``/api/pull``, ...).
* :mod:`tests.support.mirror` -- ``ollama-seed serve``'s app in a thread (``serving``), htpasswd files.
* :mod:`tests.support.proxy` (with :mod:`tests.support.shaping` and :mod:`tests.support._http`) -- an
  HTTP/1.1 reverse proxy for bandwidth shaping, latency and fault injection.

Builders:

* :mod:`tests.support.model` -- deterministic Ollama-style models (``make_model``).
* :mod:`tests.support.craft` -- bundles built member by member, including broken ones.
* :mod:`tests.support.ggufmake` -- small GGUF files written with llama.cpp's own ``gguf`` writer.
* :mod:`tests.support.tls` -- a throw-away CA and a server certificate for 127.0.0.1/localhost.

Checks and processes:

* :mod:`tests.support.invariants` -- the store invariants checked after every fault, kill and hostile
  input (``store_problems``/``assert_store_ok``), and ``tree`` for byte comparisons.
* :mod:`tests.support.cli` -- ``python -m ollama_seed`` as a subprocess (``run_cli``), killed with
  SIGKILL after a delay (``pull_then_kill``).
* :mod:`tests.support.smallfs` -- a size-limited tmpfs mounted under a test's tmp_path (root only).

:mod:`tests.support.test_support` tests these helpers themselves.
"""

MIB = 1 << 20
"""One mebibyte."""
SECRET = b"top secret outside the store\n"
"""Written next to (outside) a store: no request or input may ever read it back."""
