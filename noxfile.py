"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite (integration tests need docker-registry: scripts/install-test-deps.sh)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "ollama_seed", "tests", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "ollama_seed")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against aria2c, curl, tar and zstd on this machine (needs the Debian packages)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "benchmarks.pullbench", *session.posargs)
