"""The server half of ``ensure``: confirm a server sees the models, warm them, or have it pull them."""

from __future__ import annotations

import time
from typing import Any

import anyio

from ..core.digest import Digest
from ..core.errors import OfflineError, SeedError, ServerError
from ..core.reference import ModelName
from .local import OFFLINE_ENV, EnsureReport, EnsureStatus
from .options import EnsureOptions
from .server import ServerClient

__all__ = ["confirm", "via_server"]


async def confirm(reports: list[EnsureReport], o: EnsureOptions) -> list[EnsureReport]:
    """Wait for the server, check it sees every model, warm them if asked."""
    assert o.server is not None
    async with ServerClient(o.server, transport=o.server_transport) as client:
        o.tracker.phase = f"waiting for the Ollama server at {client.url}"
        await client.wait(o.wait_timeout)
        o.tracker.phase = "checking the models with the server"
        for report in reports:
            if not await client.has_model(report.model):
                raise ServerError(
                    f"{report.model} is complete in {o.store.root}, but the Ollama server at {client.url} does not "
                    "see it: the server reads another models directory. Give both the same volume, or set "
                    f"OLLAMA_MODELS for one of them (or use --via-server)"
                )
        out = []
        for report in reports:
            if o.warm:
                o.tracker.phase = f"loading {report.model} into the server's memory"
                await client.load(report.model, keep_alive=o.keep_alive)
            out.append(
                EnsureReport(
                    report.name,
                    report.status,
                    report.bytes_fetched,
                    report.elapsed,
                    report.manifest_digest,
                    client.url,
                    False,
                    o.warm,
                )
            )
        return out


def _digests(models: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for m in models:
        name, digest = m.get("name") or m.get("model"), m.get("digest")
        if isinstance(name, str) and isinstance(digest, str):
            out[name.lower()] = digest
    return out


def _digest_of(table: dict[str, str], ref: ModelName) -> Digest | None:
    text = table.get(ref.display.lower())
    try:
        return Digest(text) if text else None
    except SeedError:
        return None


async def via_server(refs: list[ModelName], o: EnsureOptions) -> list[EnsureReport]:
    started = time.monotonic()
    assert o.server is not None
    reports: dict[str, EnsureReport] = {}
    async with ServerClient(o.server, transport=o.server_transport) as client:
        o.tracker.phase = f"waiting for the Ollama server at {client.url}"
        await client.wait(o.wait_timeout)
        o.tracker.phase = "asking the server which models it has"
        before = _digests(await client.tags())
        todo = []
        for ref in refs:
            if (o.update and not o.offline) or not await client.has_model(ref.display):
                todo.append(ref)
            else:
                reports[str(ref)] = EnsureReport(
                    ref, "present", 0, time.monotonic() - started, _digest_of(before, ref), client.url, True
                )
        if todo and o.offline:
            raise OfflineError(
                f"offline mode ({OFFLINE_ENV} or --offline) and the Ollama server at {client.url} "
                f"does not have {', '.join(ref.display for ref in todo)}"
            )
        if todo:
            o.tracker.phase = "pulling through the server"
            o.tracker.pending = {ref.display for ref in todo}
            outcomes: dict[str, tuple[int, int]] = {}

            async def one(ref: ModelName) -> None:
                outcome = await client.pull(ref.display, insecure=bool(o.pull.get("insecure")), progress=o.tracker)
                outcomes[str(ref)] = (outcome.bytes_fetched, outcome.bytes_reused)
                o.tracker.pending.discard(ref.display)

            async with anyio.create_task_group() as tg:
                for ref in todo:
                    tg.start_soon(one, ref)
            after = _digests(await client.tags())
            for ref in todo:
                fetched = outcomes[str(ref)][0]
                old, new = _digest_of(before, ref), _digest_of(after, ref)
                status: EnsureStatus = "pulled"
                if old is not None and old == new:
                    status = "present"
                elif old is not None:
                    status = "updated"
                if not await client.has_model(ref.display):
                    raise ServerError(
                        f"the Ollama server at {client.url} reported success pulling {ref.display} but does not show it"
                    )
                reports[str(ref)] = EnsureReport(
                    ref, status, fetched, time.monotonic() - started, new, client.url, True
                )
        out = []
        for ref in refs:
            report = reports[str(ref)]
            if o.warm:
                o.tracker.phase = f"loading {ref.display} into the server's memory"
                await client.load(ref.display, keep_alive=o.keep_alive)
                report = EnsureReport(
                    report.name,
                    report.status,
                    report.bytes_fetched,
                    report.elapsed,
                    report.manifest_digest,
                    report.server,
                    True,
                    True,
                )
            out.append(report)
        return out
