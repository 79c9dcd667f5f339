"""Talking to a running Ollama server: readiness, presence, pulls and loads through its API.

- The address follows ``OLLAMA_HOST`` exactly as Ollama's client reads it (``envconfig.Host``
  and ``ConnectableHost``): the scheme defaults to ``http``; the port to ``11434``, or to 80/443
  when a scheme is written; ``ollama.com`` alone means ``https://ollama.com:443``; a path after
  the host is kept as a prefix; ``0.0.0.0`` and ``::`` (bind-all addresses) are reached at
  loopback; an unparsable port falls back to the default.
- Readiness is ``GET /api/version`` (``GET /`` on servers without it), polled with capped,
  jittered exponential backoff until a deadline.
- ``/api/show`` answers whether the server sees a model; ``/api/pull`` streams NDJSON progress,
  which becomes our :mod:`core.progress` events, and an ``{"error": ...}`` line is a failure;
  ``/api/generate`` with no prompt loads a model into memory (``keep_alive`` decides how long
  it stays).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import httpx

from ..core.errors import ConfigError, ServerError
from ..core.progress import LayerProgress, ProgressCallback, Status, no_progress
from ..wire.sync import blocking

__all__ = ["DEFAULT_HOST", "PullOutcome", "ServerClient", "ServerInfo", "await_ready", "parse_host", "wait_ready"]

log = logging.getLogger("ollama_seed")

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
_HOSTPORT = re.compile(r"[A-Za-z0-9._\-:\[\]%]*")  # a host name, an IPv4 or [IPv6] address, a port: no spaces
FIRST_DELAY = 0.1
MAX_DELAY = 2.0
PROBE_TIMEOUT = 5.0


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: None where Go returns an error."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or hostport[end + 1 : end + 2] != ":":
            return None
        host, port = hostport[1:end], hostport[end + 2 :]
        return None if ":" in port else (host, port)
    if hostport.count(":") != 1:
        return None
    host, _, port = hostport.partition(":")
    return host, port


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host(value: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The base URL of an Ollama server, read as Ollama's own client reads ``OLLAMA_HOST``.

    Args:
        value: an address such as ``ollama:11434``, ``https://host``, ``http://[::1]:8080/prefix``;
            None reads ``$OLLAMA_HOST`` (default ``http://127.0.0.1:11434``).
        environ: the environment to read instead of ``os.environ``.

    Raises:
        ConfigError: a scheme other than http or https.
    """
    if value is None:
        env = os.environ if environ is None else environ
        value = env.get("OLLAMA_HOST", "")
    s = value.strip().strip("\"'").strip()  # envconfig.Var trims spaces and quotes
    default_port = str(DEFAULT_PORT)
    scheme, sep, hostport = s.partition("://")
    if not sep:
        scheme, hostport = "http", s
        if s == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    else:
        raise ConfigError(f"Ollama server address {value!r}: scheme {scheme!r} is neither http nor https")
    hostport, _, path = hostport.partition("/")
    if not _HOSTPORT.fullmatch(hostport):
        raise ConfigError(
            f"Ollama server address {value!r} is not host[:port] or an http(s) URL "
            "(examples: ollama:11434, http://127.0.0.1:11434, https://ollama.example)"
        )
    split = _split_host_port(hostport)
    if split is None:
        host, port = "127.0.0.1", default_port
        bare = hostport.strip("[]")
        try:
            host = str(ipaddress.ip_address(bare))
        except ValueError:
            if hostport:
                host = hostport
    else:
        host, port = split
    if not (port.isdigit() and int(port) <= 65535):
        log.warning("Ollama server address %r: invalid port %r, using %s", value, port, default_port)
        port = default_port
    try:
        ip = ipaddress.ip_address(host) if host else None
    except ValueError:
        ip = None
    if host == "" or (ip is not None and ip.is_unspecified):  # ConnectableHost
        host = "::1" if ip is not None and ip.version == 6 else "127.0.0.1"
    url = f"{scheme}://{_join_host_port(host, str(int(port)))}"
    path = path.strip("/")
    return f"{url}/{path}" if path else url


def _excerpt(text: str) -> str:
    return " ".join(text.split())[:80]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A server that answered: its base URL, its version (None if it did not say) and the wait."""

    url: str
    version: str | None
    waited: float


@dataclass(frozen=True, slots=True)
class PullOutcome:
    """What a pull through the server reported: bytes it downloaded, bytes it already had."""

    bytes_fetched: int
    bytes_reused: int


def _error_text(resp: httpx.Response) -> str:
    try:
        doc = json.loads(resp.content)
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            return str(doc["error"])
    except ValueError:
        pass
    text = resp.content[:200].decode("utf-8", "replace").strip()
    return f"HTTP {resp.status_code}" + (f": {text}" if text else "")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"connection refused or unreachable ({exc or type(exc).__name__})"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


class ServerClient:
    """An HTTP client for one Ollama server. Use as an async context manager."""

    def __init__(
        self, host: str | None = None, *, transport: httpx.AsyncBaseTransport | None = None, timeout: float = 30.0
    ) -> None:
        self.url = parse_host(host)
        self._client = httpx.AsyncClient(
            base_url=self.url,
            transport=transport,
            trust_env=True,
            follow_redirects=True,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": "ollama-seed", "Accept": "application/json"},
        )

    async def __aenter__(self) -> ServerClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._client.aclose()

    async def _request(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(f"Ollama server at {self.url}: {what} failed: {_describe(exc)}") from exc

    # -- readiness ----------------------------------------------------------------------
    async def probe(self) -> tuple[str | None, str | None]:
        """One readiness check: ``(version, None)`` when ready, ``(None, failure)`` when not.

        Ready means an Ollama server answered: ``/api/version`` with ``{"version": ...}``, or (a
        server without that route) ``/`` with Ollama's ``Ollama is running``.

        Raises:
            ServerError: something that is not an Ollama server answered 200 (a registry, a web
                server): waiting longer cannot help, the address is wrong.
        """
        try:
            with anyio.fail_after(PROBE_TIMEOUT):
                resp = await self._client.get("/api/version", timeout=PROBE_TIMEOUT)
                if resp.status_code == 404:
                    root = await self._client.get("/", timeout=PROBE_TIMEOUT)
                    if root.status_code == 200 and root.text.strip().startswith("Ollama is running"):
                        return "", None
                    if root.status_code == 200:
                        raise self._not_ollama(f"GET /api/version answered 404 and GET / {_excerpt(root.text)!r}")
        except TimeoutError:
            return None, f"no answer within {PROBE_TIMEOUT:g} s"
        except httpx.HTTPError as exc:
            return None, _describe(exc)
        if resp.status_code != 200:
            return None, _error_text(resp)
        try:
            version = resp.json().get("version")
        except (ValueError, AttributeError):
            version = None
        if not isinstance(version, str):
            raise self._not_ollama(f"GET /api/version answered {_excerpt(resp.text)!r}, with no version")
        return version, None

    def _not_ollama(self, what: str) -> ServerError:
        return ServerError(
            f"{self.url} answers, but it is not an Ollama server ({what}); check --server/OLLAMA_HOST "
            "(Ollama listens on port 11434 unless OLLAMA_HOST says otherwise)"
        )

    async def wait(
        self,
        timeout: float | None = 60.0,  # noqa: ASYNC109 - a polling budget, not a scope
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> ServerInfo:
        """Poll until the server answers; backoff from 0.1 s doubling to 2 s, with jitter.

        Raises:
            ServerError: *timeout* seconds passed; the message names the address and the last failure.
        """
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        delay = FIRST_DELAY
        rand = rng or random.Random()
        nap = sleep or anyio.sleep
        attempts = 0
        while True:
            attempts += 1
            version, failure = await self.probe()
            if failure is None:
                return ServerInfo(self.url, version or None, time.monotonic() - started)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise ServerError(
                    f"Ollama server at {self.url} was not ready after {now - started:.1f} s "
                    f"({attempts} attempt(s)); last failure: {failure}. Check that it is running and that "
                    "--server/OLLAMA_HOST names it"
                )
            log.debug("Ollama server at %s not ready (%s); retrying in %.2f s", self.url, failure, delay)
            pause = delay * rand.uniform(0.8, 1.2)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - now))
            await nap(pause)
            delay = min(delay * 2, MAX_DELAY)

    # -- models ---------------------------------------------------------------------------
    async def has_model(self, model: str) -> bool:
        """Whether ``/api/show`` knows *model*.

        Raises:
            ServerError: the server failed or answered something other than 200/404.
        """
        resp = await self._request("POST", "/api/show", f"show {model}", json={"model": model})
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise ServerError(f"Ollama server at {self.url} could not show {model}: {_error_text(resp)}")

    async def tags(self) -> list[dict[str, Any]]:
        """The ``/api/tags`` model list.

        Raises:
            ServerError: the server failed or answered nonsense.
        """
        resp = await self._request("GET", "/api/tags", "list models")
        if resp.status_code != 200:
            raise ServerError(f"Ollama server at {self.url} could not list models: {_error_text(resp)}")
        try:
            models = resp.json().get("models") or []
        except (ValueError, AttributeError):
            raise ServerError(f"Ollama server at {self.url} answered /api/tags with something not JSON") from None
        return [m for m in models if isinstance(m, dict)]

    async def pull(
        self, model: str, *, insecure: bool = False, progress: ProgressCallback | None = None
    ) -> PullOutcome:
        """Ask the server to pull *model*, turning its NDJSON stream into progress events.

        Raises:
            ServerError: an HTTP error, an ``{"error": ...}`` line, or a stream that ended before ``success``.
        """
        emit = progress or no_progress
        seen: dict[str, tuple[int, bool]] = {}  # digest -> (completed, cached)
        body = {"model": model, "insecure": insecure, "stream": True}
        what = f"Ollama server at {self.url} could not pull {model}"
        try:
            async with self._client.stream(
                "POST", "/api/pull", json=body, timeout=httpx.Timeout(None, connect=10.0)
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise ServerError(f"{what}: {_error_text(resp)}")
                success = False
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        raise ServerError(
                            f"{what}: the progress stream has a line that is not JSON: {line[:120]!r}"
                        ) from None
                    if not isinstance(doc, dict):
                        continue
                    if "error" in doc:
                        raise ServerError(f"{what}: {doc['error']}")
                    success = self._progress_line(model, doc, seen, emit) or success
        except httpx.HTTPError as exc:
            raise ServerError(f"{what}: {_describe(exc)}") from exc
        if not success:
            raise ServerError(f"{what}: the progress stream ended without 'success'")
        fetched = sum(done for done, cached in seen.values() if not cached)
        reused = sum(done for done, cached in seen.values() if cached)
        return PullOutcome(fetched, reused)

    @staticmethod
    def _progress_line(
        model: str, doc: dict[str, Any], seen: dict[str, tuple[int, bool]], emit: ProgressCallback
    ) -> bool:
        status = str(doc.get("status", ""))
        digest = doc.get("digest")
        if isinstance(digest, str) and digest.startswith("sha256:"):
            total = doc.get("total") if isinstance(doc.get("total"), int) else 0
            completed = doc.get("completed") if isinstance(doc.get("completed"), int) else 0
            assert isinstance(total, int) and isinstance(completed, int)
            first = digest not in seen
            # Ollama reports a blob it already has with one line where completed == total.
            cached = seen[digest][1] if not first else bool(total) and completed == total
            seen[digest] = (max(completed, seen.get(digest, (0, False))[0]), cached)
            emit(
                LayerProgress(
                    model, digest, "", total, completed, cached=cached, done=bool(total) and completed >= total
                )
            )
            return False
        if status:
            emit(Status(model, status))
        return status == "success"

    async def load(self, model: str, *, keep_alive: str | float | None = None) -> None:
        """Load *model* into memory with an empty generate request.

        Raises:
            ServerError: the server refused (unknown model, not enough memory, ...).
        """
        body: dict[str, Any] = {"model": model, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        resp = await self._request(
            "POST", "/api/generate", f"load {model}", json=body, timeout=httpx.Timeout(None, connect=10.0)
        )
        if resp.status_code != 200:
            raise ServerError(f"Ollama server at {self.url} could not load {model}: {_error_text(resp)}")


async def await_ready(
    host: str | None = None,
    *,
    timeout: float | None = 60.0,  # noqa: ASYNC109
    transport: httpx.AsyncBaseTransport | None = None,
) -> ServerInfo:
    """Wait until the Ollama server at *host* (default ``$OLLAMA_HOST``) answers.

    Args:
        host: an address in any form ``OLLAMA_HOST`` accepts.
        timeout: seconds to keep trying; None waits forever.
        transport: an httpx transport (tests).

    Raises:
        ServerError: not ready in time; the message names the address and the last failure.
        ConfigError: *host* has an unsupported scheme.
    """
    async with ServerClient(host, transport=transport) as client:
        return await client.wait(timeout)


wait_ready = blocking(await_ready, "wait_ready")
