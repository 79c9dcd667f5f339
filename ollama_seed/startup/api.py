"""``ensure()``: make models usable, cheaply when they already are.

How it decides, per model:

1. The cheap check, with no network: the manifest parses (and matches a pinned digest) and
   every blob it names is in ``blobs/`` with the right size. ``verify=True`` also re-hashes.
2. Complete: done (unless ``update=True``, which asks the registry for the tag's current
   manifest and fetches only the layers that changed).
3. Incomplete: pull what is missing. When the manifest on disk is intact, its blobs are
   fetched (the model stays the version you had); otherwise the registry's manifest is.
   Every model of one call shares one :class:`~ollama_seed.pulling.session.PullSession`: one connection budget,
   and a blob two models share is downloaded once.
4. With a server: wait until it answers, confirm it sees each model (``/api/show``), and with
   ``warm=True`` load each one into memory. With ``via_server=True`` the server itself pulls
   (for init containers that cannot reach the models volume).

Offline (``offline=True`` or ``OLLAMA_SEED_OFFLINE=1``) never talks to a registry and fails at
once, naming what is missing. A server you name is still asked, since it is yours.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from ..core.errors import ConfigError, SeedError, SeedTimeout
from ..core.groups import raise_collapsed
from ..core.layout import StrPath
from ..core.reference import ModelName
from ..store.store import ModelStore
from .local import (
    EnsureReport,
    EnsureStatus,
    LocalState,
    Modelfiles,
    Names,
    created_up_to_date,
    inspect_local,
    model_names,
    offline_error,
    offline_from_env,
    present_report,
    verify_local,
)
from .options import EnsureOptions, EnsureProgress, check_ensure_options, trust_applies

if TYPE_CHECKING:
    import httpx
    from typing_extensions import Unpack

    from ..pulling.options import PullOptions
    from ..pulling.session import PullSession

__all__ = ["EnsureReport", "aensure", "offline_from_env"]

log = logging.getLogger("ollama_seed")


async def aensure(
    names: Names,
    *,
    models_dir: StrPath | None = None,
    verify: bool = False,
    update: bool = False,
    offline: bool | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - an overall deadline is part of the public contract
    server: str | None = None,
    via_server: bool = False,
    wait_timeout: float | None = 60.0,
    warm: bool = False,
    keep_alive: str | float | None = None,
    server_transport: httpx.AsyncBaseTransport | None = None,
    modelfiles: Modelfiles | None = None,
    **options: Unpack[PullOptions],
) -> list[EnsureReport]:
    """Make each named model usable, touching the network only for what is missing.

    Args:
        names: one model name or several (``"llama3.2:1b"``, ``["a", "b"]``).
        models_dir: the store; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        verify: re-hash every blob on disk (slow for big models); corrupt blobs are fetched again.
        update: ask the registry for the tag's current manifest; fetch only the changed layers.
        offline: never talk to a registry; fail at once naming what is missing. None reads
            ``OLLAMA_SEED_OFFLINE``. Wins over *update*.
        timeout: overall seconds for the whole call; None for no limit.
        server: an Ollama server (any ``OLLAMA_HOST`` form) that must see each model
            (``/api/show``). Implied as ``$OLLAMA_HOST`` by *via_server* and *warm*.
        via_server: have the server pull (``/api/pull``) instead of writing the store ourselves.
        wait_timeout: seconds to wait for the server to answer before using it.
        warm: load each model into the server's memory (an empty ``/api/generate``).
        keep_alive: how long a warmed model stays loaded (``"10m"``, ``-1`` for ever); None is
            the server's default.
        server_transport: httpx transport for the Ollama server (tests).
        modelfiles: ``{name: Modelfile path}``: models made with :func:`~ollama_seed.create` (after the
            named models are pulled, so a FROM may name one of them), again only when the Modelfile or
            a file it names changed (``.ollama-seed/created.json``); offline, a FROM model must be there.
        options: :class:`~ollama_seed.PullOptions`, for what is pulled (``progress`` also gets the
            server's events).

    Returns:
        One :class:`EnsureReport` per distinct name, in the order given.

    Raises:
        ConfigError: an option out of range (before any work).
        InvalidName: a name Ollama would refuse.
        OfflineError: offline and something is missing.
        SignatureError: trust is configured and a model has no signature by a key or CA you trust.
        SeedTimeout: *timeout* passed; the message says what was unfinished.
        ServerError: the server did not become ready, does not see a model, or failed a pull or load.
        ConfigError: *server* has an unsupported scheme.
        ModelNotFound, AuthenticationError, RegistryError, TransferError, IntegrityError,
        InsufficientSpace, StoreError: from pulling, as :func:`apull`.
    """
    settings = check_ensure_options({"timeout": timeout, "wait_timeout": wait_timeout, **options})
    refs = model_names(names)
    server_url = None
    if server is not None or via_server or warm:
        from .server import parse_host  # httpx loads only where a server is involved

        server_url = parse_host(server)
    tracker = EnsureProgress(settings.progress)
    opts = EnsureOptions(
        store=ModelStore(models_dir),
        verify=verify,
        update=update,
        offline=offline_from_env() if offline is None else offline,
        server=server_url,
        wait_timeout=wait_timeout,
        warm=warm,
        keep_alive=keep_alive,
        pull={**settings.options(), "progress": tracker},
        server_transport=server_transport,
        tracker=tracker,
        trust=settings.trust,
    )
    result: list[EnsureReport] | None = None
    with anyio.move_on_after(timeout):
        try:
            if via_server:
                if trust_applies(settings.trust, refs):
                    raise ConfigError(
                        "signatures are checked as ollama-seed pulls; with via_server the Ollama server pulls and "
                        "checks none: pull here (without via_server), or leave the signature requirement out"
                    )
                if modelfiles:
                    raise ConfigError(
                        "a Modelfile is created into the models directory, which via_server means "
                        "this process cannot reach: create it where the directory is mounted"
                    )
                from .via_server import via_server as through_server

                result = await through_server(refs, opts)
            else:
                result = await _local(refs, opts)
                if modelfiles:
                    result += await _created(modelfiles, opts)
        except BaseException as exc:
            raise_collapsed(exc)
    if result is None:  # the deadline cancelled the work
        raise SeedTimeout(
            f"ensure did not finish within {timeout} s {opts.tracker.describe()}; "
            "run it again to resume, or allow more time (--timeout)"
        )
    return result


async def _created(modelfiles: Modelfiles, o: EnsureOptions) -> list[EnsureReport]:
    from ..creation.api import acreate

    reports = []
    o.tracker.phase = "creating from Modelfiles"
    for name, modelfile in modelfiles.items():
        started = time.monotonic()
        made = created_up_to_date(o.store, name, modelfile)
        if made is not None:
            reports.append(present_report(made, started))
            continue
        result = await acreate(
            name,
            modelfile,
            models_dir=o.store.root,
            pull=not o.offline,
            offline=o.offline,
            **o.pull,
        )
        for warning in result.warnings:
            log.warning("%s: %s", result.name.display, warning)
        reports.append(
            EnsureReport(
                result.name,
                "present" if result.unchanged else "created",
                result.bytes_copied,
                time.monotonic() - started,
                result.manifest_digest,
            )
        )
    if o.server is not None:
        from .via_server import confirm

        reports = await confirm(reports, o)
    return reports


async def _local(refs: list[ModelName], o: EnsureOptions) -> list[EnsureReport]:
    started = time.monotonic()
    locals_ = [inspect_local(o.store, ref) for ref in refs]
    if o.verify:
        o.tracker.phase = "verifying blobs"
        locals_ = [
            await anyio.to_thread.run_sync(verify_local, o.store, item, abandon_on_cancel=True) for item in locals_
        ]
    incomplete = [item for item in locals_ if not item.complete]
    if o.offline and incomplete:
        raise offline_error(o.store, incomplete)
    reports: dict[str, EnsureReport] = {}
    for ref, item in zip(refs, locals_, strict=True):
        if item.complete and not (o.update and not o.offline):
            reports[str(ref)] = present_report(item, started)
    if trust_applies(o.trust) and reports:
        from .signed import check_present_signatures

        present = [
            (ref, item, reports[str(ref)]) for ref, item in zip(refs, locals_, strict=True) if str(ref) in reports
        ]
        reports.update(await check_present_signatures(present, o))
    todo = [(ref, item) for ref, item in zip(refs, locals_, strict=True) if str(ref) not in reports]
    if todo:
        pulled, errors = await _pull_all(todo, o, started)
        reports.update(pulled)
        if errors:
            raise _partial_failure([errors[str(ref)] for ref, _ in todo if str(ref) in errors], reports)
    ordered = [reports[str(ref)] for ref in refs]
    if o.server is not None:
        from .via_server import confirm

        ordered = await confirm(ordered, o)
    return ordered


def _partial_failure(errors: list[SeedError], ready: dict[str, EnsureReport]) -> SeedError:
    """The first failure (its exit code is the run's), saying which models are ready all the same:
    an init step's log must not read as if nothing had worked."""
    first = errors[0]
    for other in errors[1:]:
        log.error("ensure: %s", other)
    if len(errors) > 1:
        first.args = (f"{first} (and {len(errors) - 1} more failure(s), logged above)",)
    if ready:
        done = ", ".join(f"{r.model} ({r.status})" for r in ready.values())
        first.args = (f"{first}; the other model(s) are ready: {done}",)
    return first


async def _pull_all(
    todo: list[tuple[ModelName, LocalState]], o: EnsureOptions, started: float
) -> tuple[dict[str, EnsureReport], dict[str, SeedError]]:
    from ..pulling.session import PullSession

    o.tracker.phase = "pulling"
    o.tracker.pending = {ref.display for ref, _ in todo}
    reports: dict[str, EnsureReport] = {}
    errors: dict[str, SeedError] = {}
    async with PullSession(o.store, **o.pull) as session:

        async def one(ref: ModelName, item: LocalState) -> None:
            try:
                reports[str(ref)] = await _pull_one(session, ref, item, o.update, started)
            except SeedError as exc:
                errors[str(ref)] = exc
            o.tracker.pending.discard(ref.display)

        async with anyio.create_task_group() as tg:
            for ref, item in todo:
                tg.start_soon(one, ref, item)
    return reports, errors


async def _pull_one(
    session: PullSession, ref: ModelName, item: LocalState, update: bool, started: float
) -> EnsureReport:
    name = item.name
    manifest = item.manifest
    if update:
        manifest = await session.fetch_manifest(name)
        assert manifest is not None
        if item.complete and item.manifest is not None and manifest.digest == item.manifest.digest:
            return present_report(item, started)
    # Blobs verify=True found corrupt are marked damaged (store/verified): the pull hashes them, fetches
    # them again and renames the new bytes over the old, never deleting first (a crash in between
    # would leave the manifest naming nothing).
    result = await session.pull(name, manifest)
    changed = item.manifest is not None and item.manifest.digest != result.manifest_digest
    status: EnsureStatus = "updated" if update and changed else "pulled"
    return EnsureReport(
        name,
        status,
        result.bytes_downloaded,
        time.monotonic() - started,
        result.manifest_digest,
        source=result.source,
        signer=str(result.signer) if result.signer is not None else None,
    )
