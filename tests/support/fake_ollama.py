"""A fake Ollama server for tests: a plain ASGI callable, in-process or on a real socket.

It reads the models directory the way Ollama does (``manifests/<host>/<ns>/<model>/<tag>``, four
levels, case-insensitive name matching; a model is listed when its manifest is JSON and its
config blob decodes), and answers:

- ``GET|HEAD /`` -> ``Ollama is running``; ``GET|HEAD /api/version`` -> ``{"version": ...}``
- ``GET /api/tags`` -> the models on disk (``digest`` = sha256 of the manifest file)
- ``POST /api/show`` -> 200 with details, or 404 ``{"error": "model 'x' not found"}``
- ``POST /api/pull`` -> streamed NDJSON, Ollama's sequence: ``pulling manifest``, per-blob lines,
  ``verifying sha256 digest``, ``writing manifest``, ``success``. Where the model comes from:
  ``catalog`` (``display name -> BuiltModel``, written straight into the models dir), else
  ``registry_transport`` (pulled through ollama_seed's own engine), else an error line as Ollama
  gives for an unknown model. ``pull_error`` ends every pull with that error line instead.
- ``POST /api/generate`` -> loads the model (recorded in ``loaded`` with its ``keep_alive``)

``ready_after`` answers 503 until that many seconds after creation (a proxy in front of a server
that is starting). For "connection refused until ready", serve it with
``ServerThread(app, delay=...)``: the port is bound at once but listens only after the delay.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ollama_seed.core.reference import ModelName

from .model import BuiltModel

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class FakeOllama:
    """An ASGI app standing in for ``ollama serve`` over one models directory."""

    def __init__(
        self,
        models_dir: Path,
        *,
        version: str = "0.12.0",
        ready_after: float = 0.0,
        catalog: dict[str, BuiltModel] | None = None,
        registry_transport: httpx.AsyncBaseTransport | None = None,
        pull_error: str | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.version = version
        self.ready_at = time.monotonic() + ready_after
        self.catalog = dict(catalog or {})
        self.registry_transport = registry_transport
        self.pull_error = pull_error
        self.requests: list[tuple[str, str, Any]] = []
        self.loaded: dict[str, Any] = {}

    # -- the models directory, read as Ollama reads it ------------------------------------
    def _manifest_path(self, model: str) -> Path | None:
        try:
            name = ModelName.parse(model)
        except ValueError:
            return None
        here = self.models_dir / "manifests"
        for part in name.path_parts:
            try:
                entries = os.listdir(here)
            except OSError:
                return None
            match = part if part in entries else next((e for e in entries if e.lower() == part.lower()), None)
            if match is None:
                return None
            here = here / match
        return here if here.is_file() else None

    def _entry(self, path: Path) -> dict[str, Any] | None:
        """The /api/tags entry for a manifest file, or None when Ollama would skip it."""
        try:
            raw = path.read_bytes()
            doc = json.loads(raw)
            config = doc.get("config") or {}
            if config.get("digest"):
                blob = self.models_dir / "blobs" / config["digest"].replace(":", "-")
                cfg = json.loads(blob.read_bytes())
            else:
                cfg = {}
        except (OSError, ValueError, AttributeError):
            return None
        host, ns, model, tag = path.relative_to(self.models_dir / "manifests").parts
        name = ModelName(host, ns, model, tag).display
        size = sum(int(layer.get("size", 0)) for layer in doc.get("layers") or []) + int(config.get("size", 0))
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).isoformat()
        details = {
            "parent_model": "",
            "format": cfg.get("model_format", "gguf"),
            "family": cfg.get("model_family", ""),
            "families": cfg.get("model_families"),
            "parameter_size": cfg.get("model_type", ""),
            "quantization_level": cfg.get("file_type", ""),
        }
        return {
            "name": name,
            "model": name,
            "modified_at": modified,
            "size": size,
            "digest": hashlib.sha256(raw).hexdigest(),
            "details": details,
        }

    def models(self) -> list[dict[str, Any]]:
        entries = []
        for path in sorted((self.models_dir / "manifests").glob("*/*/*/*")):
            if path.is_file():
                entry = self._entry(path)
                if entry is not None:
                    entries.append(entry)
        return sorted(entries, key=lambda e: e["modified_at"], reverse=True)

    def find(self, model: str) -> dict[str, Any] | None:
        path = self._manifest_path(model)
        return self._entry(path) if path is not None else None

    # -- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = None
        self.requests.append((method, path, doc))
        if time.monotonic() < self.ready_at:
            await _respond(send, 503, b"starting", "text/plain")
            return
        head = method == "HEAD"
        if path == "/" and method in ("GET", "HEAD"):
            await _respond(send, 200, b"" if head else b"Ollama is running", "text/plain; charset=utf-8")
        elif path == "/api/version" and method in ("GET", "HEAD"):
            await _json(send, 200, {"version": self.version})
        elif path == "/api/tags" and method in ("GET", "HEAD"):
            await _json(send, 200, {"models": self.models()})
        elif not isinstance(doc, dict):
            await _json(send, 400, {"error": "invalid request body"})
        elif path == "/api/show" and method == "POST":
            await self._show(send, doc)
        elif path == "/api/generate" and method == "POST":
            await self._generate(send, doc)
        elif path == "/api/pull" and method == "POST":
            await self._pull(send, doc)
        else:
            await _respond(send, 404, b"404 page not found", "text/plain")

    async def _show(self, send: Send, doc: dict[str, Any]) -> None:
        model = str(doc.get("model") or doc.get("name") or "")
        entry = self.find(model)
        if entry is None:
            await _json(send, 404, {"error": f"model '{model}' not found"})
            return
        await _json(
            send,
            200,
            {
                "modelfile": f"# Modelfile for {entry['name']}\n",
                "parameters": "",
                "template": "",
                "details": entry["details"],
                "model_info": {},
                "capabilities": ["completion"],
                "modified_at": entry["modified_at"],
            },
        )

    async def _generate(self, send: Send, doc: dict[str, Any]) -> None:
        model = str(doc.get("model") or "")
        entry = self.find(model)
        if entry is None:
            await _json(send, 404, {"error": f"model '{model}' not found"})
            return
        self.loaded[entry["name"]] = doc.get("keep_alive")
        await _json(
            send,
            200,
            {
                "model": model,
                "created_at": datetime.now(timezone.utc).isoformat(),
                "response": "",
                "done": True,
                "done_reason": "load",
            },
        )

    async def _pull(self, send: Send, doc: dict[str, Any]) -> None:
        model = str(doc.get("model") or doc.get("name") or "")
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]}
        )

        async def line(obj: dict[str, Any]) -> None:
            await send({"type": "http.response.body", "body": json.dumps(obj).encode() + b"\n", "more_body": True})

        await line({"status": "pulling manifest"})
        try:
            if self.pull_error is not None:
                await line({"error": self.pull_error})
            elif self._catalog_model(model) is not None:
                await self._pull_catalog(model, line)
            elif self.registry_transport is not None:
                await self._pull_registry(model, bool(doc.get("insecure")), line)
            else:
                await line({"error": "pull model manifest: file does not exist"})
        finally:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _catalog_model(self, model: str) -> BuiltModel | None:
        try:
            display = ModelName.parse(model).display.lower()
        except ValueError:
            return None
        return next((m for k, m in self.catalog.items() if ModelName.parse(k).display.lower() == display), None)

    async def _pull_catalog(self, model: str, line: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        built = self._catalog_model(model)
        assert built is not None
        blobs = self.models_dir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        for b in [*built.layers, built.config]:
            target = blobs / f"sha256-{b.hex}"
            if target.exists():
                await line(
                    {"status": f"pulling {b.hex[:12]}", "digest": b.digest, "total": b.size, "completed": b.size}
                )
                continue
            await line({"status": f"pulling {b.hex[:12]}", "digest": b.digest, "total": b.size})
            b.write_to(target)
            await line({"status": f"pulling {b.hex[:12]}", "digest": b.digest, "total": b.size, "completed": b.size})
        await line({"status": "verifying sha256 digest"})
        await line({"status": "writing manifest"})
        name = ModelName.parse(model)
        path = self.models_dir.joinpath("manifests", *name.path_parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(built.manifest)
        await line({"status": "success"})

    async def _pull_registry(
        self, model: str, insecure: bool, line: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        from ollama_seed.core.errors import SeedError
        from ollama_seed.core.progress import ProgressEvent, Status
        from ollama_seed.pulling.session import PullSession
        from ollama_seed.store.store import ModelStore

        events: list[ProgressEvent] = []
        try:
            async with PullSession(
                ModelStore(self.models_dir),
                insecure=insecure,
                transport=self.registry_transport,
                progress=events.append,
            ) as session:
                await session.pull(ModelName.parse(model))
        except SeedError as exc:
            for event in events:
                await line(event.to_ollama())
            await line({"error": str(exc)})
            return
        for event in events:
            if not (isinstance(event, Status) and event.status == "pulling manifest"):
                await line(event.to_ollama())


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, doc: Any) -> None:
    await _respond(send, status, json.dumps(doc).encode(), "application/json; charset=utf-8")


class ServerThread:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; listen only after *delay* seconds.

    The port is bound at once (so :attr:`url` is known), and connections are refused until
    uvicorn starts listening, like an Ollama that is still starting.
    """

    def __init__(self, app: Any, *, delay: float = 0.0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.delay = delay
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fake-ollama-{self.port}", daemon=True)

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        self.server.run(sockets=[self.sock])

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if self.delay == 0:
            deadline = time.monotonic() + 10
            while not self.server.started and time.monotonic() < deadline:
                time.sleep(0.01)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self.sock.close()
