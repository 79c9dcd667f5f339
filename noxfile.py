"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``, ``crash``.

Every session installs the pinned versions of requirements/dev.txt (hashes checked), then the
package itself without fetching anything else, as scripts/install-test-deps.sh does for CI.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _install(session: nox.Session) -> None:
    session.install("--require-hashes", "-r", "requirements/dev.txt")
    session.install("--no-deps", "--no-build-isolation", "-e", ".")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite (integration tests need docker-registry and skopeo: scripts/install-test-deps.sh)."""
    _install(session)
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    _install(session)
    session.run("ruff", "check", "ollama_seed", "tests", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install(session)
    session.run("mypy", "ollama_seed")
    session.run("mypy", "--python-version", "3.13", "ollama_seed")


@nox.session
def crash(session: nox.Session) -> None:
    """The full crash-state exploration (issue 22): every workload, up to two operations lost per
    state, data kept in part; prints the states explored per workload and persistence model and
    every finding (CI runs a bounded set: tests/reliability/crash/test_crash_states.py)."""
    _install(session)
    session.run("python", "-m", "tests.reliability.crash", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Refresh requirements/dev.txt: the newest versions the ranges in pyproject.toml allow."""
    session.install("uv==0.13.9")
    session.run(
        "uv",
        "pip",
        "compile",
        "pyproject.toml",
        "requirements/build.in",
        "--extra",
        "dev",
        "--universal",
        "--python-version",
        "3.10",
        "--generate-hashes",
        "--upgrade",
        "-o",
        "requirements/dev.txt",
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against aria2c, curl, tar and zstd on this machine (needs the Debian packages)."""
    _install(session)
    session.run("python", "-m", "benchmarks.pullbench", *session.posargs)
