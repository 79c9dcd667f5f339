"""A real Docker Distribution registry for tests, and a seeder for Ollama-style models.

``DockerRegistry.start()`` runs Debian's ``/usr/bin/docker-registry serve CONFIG`` (Distribution
2.8) on 127.0.0.1 with filesystem storage in a work directory. ``make_model`` (from
:mod:`tests.support.model`) builds a model; ``push_blob`` / ``push_manifest`` / ``seed_registry``
(from :mod:`tests.support.seed`) push it with the v2 upload API. Facts about that registry:

* a manifest GET by tag must send ``Accept: application/vnd.docker.distribution.manifest.v2+json``
  (else it tries a schema1 rewrite and answers 400);
* a manifest PUT must carry that media type as Content-Type;
* blobs belong to one repository.

CLI::

    python -m tests.support.registry start [--port P] [--workdir D]   # prints URL, serves until SIGTERM
    python -m tests.support.registry seed URL REPO TAG --size-bytes N [--seed S] [--model-file F]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.model import MANIFEST_V2, BlobInfo, BuiltModel, make_model
from tests.support.net import free_port
from tests.support.seed import DEFAULT_CHUNK, push_blob, push_manifest, seed_registry

__all__ = [
    "MANIFEST_V2",
    "BlobInfo",
    "BuiltModel",
    "DockerRegistry",
    "make_model",
    "push_blob",
    "push_manifest",
    "registry_available",
    "seed_registry",
]

REGISTRY_BIN = Path(os.environ.get("DOCKER_REGISTRY_BIN", "/usr/bin/docker-registry"))
HTTP_SECRET = "ollama-seed-tests-fixed-secret"


def registry_available() -> bool:
    """True if the docker-registry binary is installed and executable."""
    return REGISTRY_BIN.is_file() and os.access(REGISTRY_BIN, os.X_OK)


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def registry_config(
    port: int,
    storage: Path,
    *,
    access_log: bool = True,
    log_level: str = "info",
    proxy_remote: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> str:
    """The registry's config; with *proxy_remote* it is a pull-through cache of that registry
    (Distribution's proxy mode: read-only, fetches what it lacks from the remote and keeps it)."""
    proxy = f"proxy:\n  remoteurl: {_q(proxy_remote)}\n" if proxy_remote else ""
    https = f"  tls:\n    certificate: {_q(str(tls[0]))}\n    key: {_q(str(tls[1]))}\n" if tls else ""
    return (
        proxy
        + f"""version: 0.1
log:
  level: {log_level}
  formatter: text
  accesslog:
    disabled: {"false" if access_log else "true"}
storage:
  filesystem:
    rootdirectory: {_q(str(storage))}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {_q(f"127.0.0.1:{port}")}
  secret: {_q(HTTP_SECRET)}
{https}health:
  storagedriver:
    enabled: false
"""
    )


class DockerRegistry:
    """A docker-registry subprocess bound to 127.0.0.1; use ``start()`` and ``stop()`` or ``with``."""

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, workdir: Path, tmp: Path | None, *, tls: bool = False
    ) -> None:
        self.tls = tls
        self.proc = proc
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / "registry.log"
        self._tmp = tmp

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @classmethod
    def start(
        cls,
        workdir: Path | None = None,
        port: int | None = None,
        *,
        access_log: bool = True,
        log_level: str = "info",
        timeout: float = 20.0,
        proxy_remote: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> DockerRegistry:
        """Start it; *tls* is ``(certificate, key)`` (PEM) to serve https."""
        if not registry_available():
            raise RuntimeError(f"{REGISTRY_BIN} not found (apt-get install docker-registry)")
        tmp = None
        if workdir is None:
            workdir = tmp = Path(tempfile.mkdtemp(prefix="seed-registry."))
        workdir = Path(workdir).resolve()
        (workdir / "storage").mkdir(parents=True, exist_ok=True)
        attempts = 1 if port is not None else 3  # a picked free port can be taken in between
        for attempt in range(attempts):
            p = port if port is not None else free_port()
            config = workdir / "config.yml"
            config.write_text(
                registry_config(
                    p,
                    workdir / "storage",
                    access_log=access_log,
                    log_level=log_level,
                    proxy_remote=proxy_remote,
                    tls=tls,
                )
            )
            with (workdir / "registry.log").open("ab") as log:
                proc = subprocess.Popen(
                    [str(REGISTRY_BIN), "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            reg = cls(proc, p, workdir, tmp, tls=tls is not None)
            # It runs in its own session (a Ctrl-C to the tests does not reach it), so make sure it
            # dies with this process even when the teardown never runs (pytest killed by a closed pipe).
            atexit.register(reg._kill_at_exit)
            try:
                reg._wait_ready(timeout)
                return reg
            except RuntimeError:
                retry = attempt < attempts - 1 and "address already in use" in reg.log_tail(5)
                reg.stop(remove=not retry)
                if not retry:
                    raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0, trust_env=False, verify=not self.tls) as c:  # loopback readiness only
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"docker-registry exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if c.get(f"{self.url}/v2/").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry not ready on {self.url} after {timeout}s:\n{self.log_tail()}")

    def _kill_at_exit(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, *, remove: bool = True) -> None:
        """Terminate (SIGTERM, then SIGKILL after 5 s); remove the workdir if we created it."""
        atexit.unregister(self._kill_at_exit)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if remove and self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> DockerRegistry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI


def _cmd_start(a: argparse.Namespace) -> int:
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with DockerRegistry.start(a.workdir, a.port, access_log=not a.no_access_log) as reg:
        print(reg.url, flush=True)
        while not done.wait(0.5):
            if reg.proc.poll() is not None:
                print(f"docker-registry exited:\n{reg.log_tail()}", file=sys.stderr)
                return 1
    return 0


def _cmd_seed(a: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="seed-model.") as tmp:
        model = make_model(
            Path(a.workdir or tmp),
            size_bytes=a.size_bytes,
            seed=a.seed,
            model_file=a.model_file,
            one_byte_layer=a.one_byte_layer,
        )
        out = seed_registry(a.url, a.repo, a.tag, model, a.chunked, chunk_size=a.chunk_size)
        if a.expect_dir:
            host = urllib.parse.urlsplit(a.url).netloc
            out["expected_manifest"] = str(model.expected_store(a.expect_dir, host, a.repo, a.tag))
    print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.support.registry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="run a registry; print its URL; serve until SIGTERM")
    st.add_argument("--port", type=int, default=None)
    st.add_argument("--workdir", type=Path, default=None)
    st.add_argument("--no-access-log", action="store_true")
    sd = sub.add_parser("seed", help="build and push an Ollama-style model; print JSON")
    sd.add_argument("url")
    sd.add_argument("repo", help="namespace/model, e.g. library/tiny")
    sd.add_argument("tag")
    sd.add_argument("--size-bytes", type=int, default=1 << 20)
    sd.add_argument("--seed", type=int, default=0)
    sd.add_argument("--model-file", type=Path, default=None)
    sd.add_argument("--one-byte-layer", action="store_true")
    sd.add_argument("--chunked", action="store_true")
    sd.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    sd.add_argument("--workdir", type=Path, default=None, help="where the synthetic layer file goes")
    sd.add_argument("--expect-dir", type=Path, default=None, help="also write Ollama's on-disk layout here")
    a = ap.parse_args(argv)
    return _cmd_start(a) if a.cmd == "start" else _cmd_seed(a)


if __name__ == "__main__":
    sys.exit(main())
