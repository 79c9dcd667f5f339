"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``, ``crash``, ``lock``.

``tests``, ``typecheck`` and ``bench`` install the pinned versions of requirements/dev.txt (hashes
checked), then the package itself without fetching anything else, as scripts/install-test-deps.sh
does for CI. ``lint`` installs only ruff (requirements/lint.txt): no package, no test data.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LINTED = ("ollama_seed", "tests", "benchmarks", "scripts", "noxfile.py")


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
    """ruff's rules and ruff's format, as .ci/run and .pre-commit-config.yaml check them."""
    session.install("--require-hashes", "-r", "requirements/lint.txt")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and the benchmarks, as Python 3.10 and 3.13."""
    _install(session)
    session.run("mypy")
    session.run("mypy", "--python-version", "3.13")


@nox.session
def crash(session: nox.Session) -> None:
    """The full crash-state exploration (issue 22): every workload, up to two operations lost per
    state, data kept in part; prints the states explored per workload and persistence model and
    every finding (CI runs a bounded set: tests/reliability/crash/test_crash_states.py)."""
    _install(session)
    session.run("python", "-m", "tests.reliability.crash", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Refresh requirements/dev.txt (the newest versions the ranges in pyproject.toml allow) and
    requirements/lint.txt (ruff's pin and hashes taken from it)."""
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
    write_lint_lock()


def write_lint_lock() -> None:
    """requirements/lint.txt: ruff's entry of requirements/dev.txt, hashes and all."""
    dev = Path("requirements/dev.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(dev) if line.startswith("ruff=="))
    end = next((i for i in range(start + 1, len(dev)) if not dev[i].startswith("    ")), len(dev))
    lint = Path("requirements/lint.txt")
    header = [line for line in lint.read_text().splitlines() if line.startswith("#")][:3]
    lint.write_text("\n".join([*header, *dev[start:end]]) + "\n")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against aria2c, curl, tar and zstd on this machine (needs the Debian packages)."""
    _install(session)
    session.run("python", "-m", "benchmarks.pullbench", *session.posargs)
