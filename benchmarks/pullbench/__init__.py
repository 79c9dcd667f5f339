"""pullbench: how fast does ollama-seed pull a model over a shaped link, next to aria2c and curl?

Run it with ``nox -s bench`` or ``python -m benchmarks.pullbench --help`` from the repository root.
A run starts a Docker Distribution registry on 127.0.0.1, pushes one model into it, and then, per
scenario, starts a shaping proxy (``python -m tests.support.proxy``, its own process) and measures
ollama-seed, ``aria2c -x16 -s16`` and ``curl`` on the same link, interleaved, plus the machine's own
limits (sha256 throughput, disk write with fsync). It writes a JSON file, a Markdown table and an SVG
plot under ``benchmarks/results/``.
"""

from __future__ import annotations

__all__ = ["SCHEMA"]

SCHEMA = "pullbench/2"
