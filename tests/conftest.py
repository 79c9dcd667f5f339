"""Shared fixtures: an isolated environment, a models directory, in-process and real registries."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pluggy
import pytest

from tests.support.net import refused_port
from tests.support.registry import DockerRegistry, registry_available
from tests.support.tls import CertFiles, make_certs, tls_available

# Kept for the tests and their subprocesses: the platform emulation the whole run is under.
_ENV_KEPT = ("OLLAMA_SEED_EMULATE",)
_ENV_PREFIXES = (
    "OLLAMA_",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's Ollama, proxy or CA settings; HOME points into tmp_path."""
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES) and key not in _ENV_KEPT:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but never listens: every connection is refused."""
    with refused_port() as port:
        yield port


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost, made once per run."""
    reason = tls_available()
    if reason:
        pytest.skip(reason)
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Key pairs ``site`` and ``other`` (unencrypted): ``site.key``, ``site.pub``, ``other.key``, ``other.pub``."""
    from tests.support.images import make_keys

    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def image_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A store with two small models, and their names: what image tests build images of."""
    from tests.support.images import store_models

    root = tmp_path_factory.mktemp("store")
    return root, store_models(root, 2, 60_000)


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    """A real Docker Distribution registry on 127.0.0.1 for the whole session."""
    if not registry_available():
        pytest.skip("docker-registry is not installed (apt-get install -y docker-registry)")
    with DockerRegistry.start(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def _skips_fail() -> bool:
    """On CI every skip is a failure: a test skipped for a missing tool checks nothing there, so the
    install step must bring the tool. ``OLLAMA_SEED_ALLOW_SKIPS=1`` lifts this where a runner cannot
    have a tool at all (docker-registry on macOS and Windows runners)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") and os.environ.get("OLLAMA_SEED_ALLOW_SKIPS") != "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and _skips_fail():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"skipped on CI, which must install what every test needs: {reason}\n"
            "(scripts/install-test-deps.sh installs the tools; OLLAMA_SEED_ALLOW_SKIPS=1 allows skips)"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pluggy.Result[pytest.CollectReport], None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and _skips_fail():  # a module-level importorskip
        report.outcome = "failed"
        report.longrepr = f"module skipped on CI, which must install what every test needs: {report.longrepr}"
