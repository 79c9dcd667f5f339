"""The workloads whose crash states are explored, each recorded once in-process.

Every workload prepares a store (not recorded: that is what the disk held before), then runs the
real code under a :class:`~.record.RecordingPlatform`, telling the recorder what the user was
told (``done <what>``: a model reported done, the durability barriers of check 3). It knows how
to run "the same command again" on a crash state (check 4) and what a clean run leaves.

Models are small: three blobs (the weights, 2 MiB + 1 byte, are three 1 MiB pieces; a template;
the config). Transfers use one connection, so a recording is close to the same at every run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import anyio

import ollama_seed
from ollama_seed.core.manifest import Manifest
from ollama_seed.core.progress import LayerNote, ProgressEvent, Status
from ollama_seed.core.reference import ModelName
from ollama_seed.pulling.session import PullSession
from ollama_seed.store import oscalls
from ollama_seed.store.store import ModelStore
from ollama_seed.wire import transfer
from ollama_seed.wire.transfer import TransferConfig
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.invariants import tree
from tests.support.model import BuiltModel, make_model

from .record import F_BARRIERFSYNC, F_FULLFSYNC, Hook, Killed, Recorder, recording

__all__ = ["WORKLOADS", "Ctx", "Outcome", "Workload", "record"]

MIB = 1 << 20
HOST = "reg.test"
TINY = f"{HOST}/library/tiny:latest"
TINY_V1 = f"{HOST}/library/tiny:v1"  # the same manifest under another tag
OTHER = f"{HOST}/library/other:latest"  # shares the weights with TINY
COPY = f"{HOST}/library/copy:latest"
SYNC_STEP = 512 * 1024  # resume watermarks every 512 KiB (64 MiB in real pulls)


@functools.cache
def tiny_model() -> BuiltModel:
    return make_model(size_bytes=2 * MIB + 1, seed=7, license_text=None, params=None)


@functools.cache
def other_model() -> BuiltModel:
    return make_model(size_bytes=2 * MIB + 1, seed=7, template="{{ .Prompt }} (other)", license_text=None, params=None)


@functools.cache
def known_blobs() -> tuple[dict[str, bytes], dict[str, str]]:
    """Every blob the workloads use, by hex digest, and what each is ("the weights", ...)."""
    data: dict[str, bytes] = {}
    kinds: dict[str, str] = {}
    for m in (tiny_model(), other_model()):
        for layer in Manifest.parse(m.manifest).blobs:
            data[layer.digest.hex] = m.blob(str(layer.digest)).read_bytes()
            kinds[layer.digest.hex] = "the weights" if layer.kind == "model" else f"the {layer.kind}"
    return data, kinds


def registry(faults: Faults | None = None) -> FakeRegistry:
    reg = FakeRegistry(faults)
    tiny = tiny_model()
    reg.add("library/tiny", "latest", tiny)
    reg.add("library/tiny", "v1", tiny)
    reg.add("library/other", "latest", other_model())
    reg.add("library/copy", "latest", tiny)
    return reg


@dataclass
class Outcome:
    """What running a command on a crash state did (check 4)."""

    error: BaseException | None = None
    mismatches: list[str] = field(default_factory=list)  # retry notes that blamed a digest mismatch
    downloaded: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # blob -> bytes a resume kept
    problems: list[str] = field(default_factory=list)  # what the workload's own judge saw


@dataclass
class Ctx:
    """What one recording (or one recovery) works with."""

    root: Path
    work: Path
    extra_roots: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rec: Recorder | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def told(self, message: str) -> None:
        if self.rec is not None:
            self.rec.stdout(message)

    def progress(self, event: ProgressEvent) -> None:
        if isinstance(event, Status) and event.status == "success":
            self.told(f"done {event.model}")


@contextlib.contextmanager
def small_steps() -> Iterator[None]:
    """Resume watermarks every 512 KiB, so a 2 MiB blob records some (when the code has them)."""
    try:  # where the code keeps it: wire/blobjob, or wire/transfer before it
        blobjob: Any = importlib.import_module("ollama_seed.wire.blobjob")
    except ImportError:
        blobjob = None
    holder = next((m for m in (blobjob, transfer) if m is not None and hasattr(m, "SYNC_STEP")), None)
    if holder is not None:
        with mock.patch.object(holder, "SYNC_STEP", SYNC_STEP):
            yield
    else:
        yield


async def pull(
    ctx: Ctx, name: str, reg: FakeRegistry, out: Outcome | None = None, *, attempts: int = 8, locks: bool = True
) -> None:
    """One in-process pull of *name* with one connection (as ``ollama-seed pull``)."""
    store = ModelStore(ctx.root)

    def progress(event: ProgressEvent) -> None:
        ctx.progress(event)
        if out is not None and isinstance(event, LayerNote):
            if event.kind == "retry" and "mismatch" in (event.reason or ""):
                out.mismatches.append(event.digest)
            if event.kind == "resume":
                out.kept[event.digest] = event.completed

    cfg = TransferConfig(connections=1, max_attempts=attempts, progress_interval=0.0, unique_staging=not locks)
    with small_steps():
        async with PullSession(
            store, transport=reg.transport(), progress=progress, transfer=cfg, use_locks=locks
        ) as session:
            result = await session.pull(ModelName.parse(name))
    if out is not None:
        out.downloaded += result.bytes_downloaded


def run_recovery(fn: Callable[[Outcome], object]) -> Outcome:
    out = Outcome()
    try:
        fn(out)
    except Exception as exc:
        out.error = exc
    return out


# -- the workloads ---------------------------------------------------------------------------------


@dataclass
class Workload:
    """*prepare* builds the store before recording; *run* is recorded; *again* re-runs the same
    command on a crash state (check 4); *clean* gives the tree a run without a crash leaves
    (default: the tree the recorded run left)."""

    name: str
    doc: str
    covers: tuple[str, ...]
    run: Callable[[Ctx], None]
    again: Callable[[Ctx, Outcome], None] | None
    prepare: Callable[[Ctx], None] = lambda ctx: None
    names: tuple[str, ...] = (TINY,)
    platform: str = "linux"  # or recorded macOS whose file system refuses F_FULLFSYNC ("macos-refused"), or both
    # F_FULLFSYNC and F_BARRIERFSYNC ("macos-unordered")
    foreign_actor: str = ""  # an actor whose writes are Ollama's own (checks 1-3 do not judge them)
    extra_root: str = ""
    clean: Callable[[Ctx], dict[str, bytes]] | None = None
    resume: bool = False  # check 4 also asks that a resumed download keeps what was durable
    durable: bool = True  # check 3 applies (the platform can make a rename durable)
    ci_dynamic: bool = True  # under the CI bound, also run the commands (variants of another workload: not)
    orphans_ok: bool = False  # running it again may leave blobs no manifest names (prune reclaims them)


def _pull_tiny(ctx: Ctx) -> None:
    anyio.run(pull, ctx, TINY, registry())


def _pull_tiny_again(ctx: Ctx, out: Outcome) -> None:
    anyio.run(pull, ctx, TINY, registry(), out)


def _prepare_killed_pull(ctx: Ctx) -> None:
    """A first pull that lost its connection 1.5 MiB into the weights and gave up: the staging
    file and its resume state stay (what a SIGKILL leaves, too)."""
    big = tiny_model().model_layer.hex
    reg = registry(Faults(drop_after=3 * MIB // 2, drops=1, blob_filter=big))
    with contextlib.suppress(ollama_seed.TransferError):
        anyio.run(lambda: pull(ctx, TINY, reg, attempts=1))


def _retry_run(ctx: Ctx) -> None:
    big = tiny_model().model_layer.hex
    reg = registry(Faults(corrupt_at=5000, corruptions=1, blob_filter=big))
    ctx.data["corrupt"] = {big: {5000}}
    anyio.run(pull, ctx, TINY, reg)


def _eio_run(ctx: Ctx) -> None:
    assert ctx.rec is not None
    ctx.rec.eio_dirs.add("0:blobs")
    with contextlib.suppress(ollama_seed.SeedError):
        anyio.run(pull, ctx, TINY, registry())


def _concurrent_run(ctx: Ctx) -> None:
    """Two processes pull two tags of one model. The first has renamed the last blob into place
    and is about to sync ``blobs/`` when the second finds every blob there and writes its
    manifest; then the first goes on."""
    rec = ctx.rec
    assert rec is not None
    paused, second_done = threading.Event(), threading.Event()
    blobs = ctx.root / "blobs"

    def all_there(kind: str, path: str) -> bool:
        return (
            kind == "fsync_dir"
            and path == "0:blobs"
            and getattr(rec.actor, "name", "") == "first"
            and len(os.listdir(blobs)) == len(tiny_model().blobs)
        )

    def pause() -> None:
        paused.set()
        second_done.wait(30)

    rec.hooks.append(Hook(all_there, pause))
    errors: list[BaseException] = []

    def first() -> None:
        with rec.as_actor("first"):
            try:
                anyio.run(pull, ctx, TINY, registry())
            except BaseException as exc:
                errors.append(exc)
                paused.set()

    def second() -> None:
        paused.wait(30)
        with rec.as_actor("second"):
            try:
                anyio.run(pull, ctx, TINY_V1, registry())
            except BaseException as exc:
                errors.append(exc)
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]


def _concurrent_again(ctx: Ctx, out: Outcome) -> None:
    anyio.run(pull, ctx, TINY, registry(), out)
    anyio.run(pull, ctx, TINY_V1, registry(), out)


def _bundle(ctx: Ctx) -> Path:
    src = ctx.work / "source-store"
    bundle = ctx.work / "tiny.ollama"
    if not bundle.exists():
        anyio.run(pull, Ctx(src, ctx.work), TINY, registry())
        ollama_seed.export_bundle(TINY, bundle, models_dir=src, compress="none")
    return bundle


def _import_run(ctx: Ctx) -> None:
    ollama_seed.import_bundle(_bundle(ctx), models_dir=ctx.root, progress=ctx.progress)
    ctx.told(f"done import {TINY}")


def _import_again(ctx: Ctx, out: Outcome) -> None:
    ollama_seed.import_bundle(_bundle(ctx), models_dir=ctx.root)


def _modelfile(ctx: Ctx) -> Path:
    mf = ctx.work / "Modelfile"
    if not mf.exists():
        write_gguf(ctx.work / "tiny.gguf")
        mf.write_text("FROM ./tiny.gguf\nPARAMETER temperature 0.5\n")
    return mf


def write_gguf(path: Path) -> None:
    """A small, real GGUF written by llama.cpp's own writer (the gguf package)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_file_type(1)
    w.add_context_length(128)
    w.add_embedding_length(8)
    w.add_tensor("token_embd.weight", np.arange(64 * 8, dtype=np.float32).reshape(64, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _create_run(ctx: Ctx) -> None:
    ollama_seed.create(TINY, _modelfile(ctx), models_dir=ctx.root, offline=True, progress=ctx.progress)


def _create_again(ctx: Ctx, out: Outcome) -> None:
    ollama_seed.create(TINY, _modelfile(ctx), models_dir=ctx.root, offline=True)


def _two_models(ctx: Ctx) -> None:
    anyio.run(pull, ctx, TINY, registry())
    anyio.run(pull, ctx, OTHER, registry())


def _rm_prune_run(ctx: Ctx) -> None:
    store = ModelStore(ctx.root)
    store.remove(ModelName.parse(TINY))
    ctx.told(f"removed {TINY}")
    store.prune(grace_seconds=0)


def _rm_prune_again(ctx: Ctx, out: Outcome) -> None:
    store = ModelStore(ctx.root)
    with contextlib.suppress(ollama_seed.ModelNotFound):
        store.remove(ModelName.parse(TINY))
    store.prune(grace_seconds=0)


def _budget(ctx: Ctx) -> Any:
    from ollama_seed.mirror.budget import CacheBudget

    store = ModelStore(ctx.root)
    both = {b.hex: b.size for m in (tiny_model(), other_model()) for b in m.blobs}
    budget = CacheBudget(store, max_bytes=sum(both.values()) + MIB)  # 2 MiB more need room
    budget.start()
    return budget


def _prepare_mirror(ctx: Ctx) -> None:
    _two_models(ctx)
    budget = _budget(ctx)
    budget.adopt(ModelName.parse(TINY))  # served first: the least recently served, evicted first
    budget.adopt(ModelName.parse(OTHER))


def _evict(ctx: Ctx) -> None:
    budget = _budget(ctx)
    if not budget.evictable():  # the record of what was served is gone: nothing to evict
        return
    budget._make_room(2 * MIB)  # as the pull-through does before fetching a 2 MiB blob
    budget.flush(force=True)


def _evict_run(ctx: Ctx) -> None:
    _evict(ctx)
    ctx.told(f"evicted {TINY}")


def _evict_again(ctx: Ctx, out: Outcome) -> None:
    _evict(ctx)


def ollama_writes(root: Path, model: BuiltModel, name: str) -> None:
    """What Ollama's own pull writes (server/download.go, server/manifest.go): each blob into
    ``blobs/<name>-partial`` truncated to its size, written, renamed to its name; the manifest
    created and written in place. No fsync anywhere."""
    plat = oscalls.host
    blobs = root / "blobs"
    parts = ModelName.parse(name).path_parts
    dirs = [root / "blobs", root / "manifests"] + [root / "manifests" / Path(*parts[:i]) for i in range(1, 4)]
    for d in dirs:  # os.MkdirAll
        if not d.exists():
            plat.mkdir(d, 0o755)
    for blob in model.blobs:
        final = blobs / f"sha256-{blob.hex}"
        if final.exists():
            continue
        partial = final.with_name(final.name + "-partial")
        fd = plat.open_nofollow(partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            plat.preallocate(fd, blob.size, blobs)
            data = blob.read_bytes()
            for off in range(0, len(data), MIB):
                plat.pwrite_all(fd, data[off : off + MIB], off)
        finally:
            os.close(fd)
        plat.replace(partial, final)
    path = root / "manifests" / Path(*ModelName.parse(name).path_parts)
    fd = plat.open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        plat.write_all(fd, model.manifest)
    finally:
        os.close(fd)


def _ollama_then_pull(ctx: Ctx) -> None:
    assert ctx.rec is not None
    with ctx.rec.as_actor("ollama"):
        ollama_writes(ctx.root, tiny_model(), TINY)
    ModelStore(ctx.root).prepare()
    anyio.run(pull, ctx, OTHER, registry())


def _ollama_then_pull_again(ctx: Ctx, out: Outcome) -> None:
    """Our pull again (it must not report success over a blob that lost its bytes, whoever wrote
    it, nor trust a stamp that vouched for bytes never made durable), then ``ensure --verify`` of
    both models, which repairs what Ollama left."""
    anyio.run(pull, ctx, OTHER, registry(), out)
    damaged = ModelStore(ctx.root).verify(ModelName.parse(OTHER))
    if damaged:
        out.problems.append(f"the pull again reported success over damaged {damaged[0].layer.kind} blob")
    ollama_seed.ensure([TINY, OTHER], models_dir=ctx.root, verify=True, transport=registry().transport())


def _ollama_clean(ctx: Ctx) -> dict[str, bytes]:
    """A clean run: Ollama's model and ours, complete (Ollama's leftovers in blobs/ aside)."""
    ref = ctx.work / "clean"
    anyio.run(pull, Ctx(ref, ctx.work), TINY, registry())
    anyio.run(pull, Ctx(ref, ctx.work), OTHER, registry())
    return tree(ref)


def _prepare_damaged(ctx: Ctx) -> None:
    """A complete model whose weights Ollama's sparse ``Truncate`` left zero-filled, right size."""
    _pull_tiny(ctx)
    blob = ctx.root / "blobs" / f"sha256-{tiny_model().model_layer.hex}"
    size = blob.stat().st_size
    blob.unlink()
    with open(blob, "wb") as f:
        f.truncate(size)
    blob.chmod(0o644)
    ctx.data["damaged"] = {f"0:blobs/{blob.name}"}


def _verify_repair(ctx: Ctx) -> None:
    ollama_seed.ensure(
        TINY, models_dir=ctx.root, verify=True, transport=registry().transport(), connections=1, progress=ctx.progress
    )


def _verify_repair_again(ctx: Ctx, out: Outcome) -> None:
    ollama_seed.ensure(TINY, models_dir=ctx.root, verify=True, transport=registry().transport(), connections=1)


def _export_run(ctx: Ctx) -> None:
    target = ctx.extra_roots[0] / "layout"
    ollama_seed.export_bundle(TINY, target, models_dir=ctx.root, format="oci")
    ctx.told("done export")


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            "pull",
            "a 3-layer pull with its manifest into a new store",
            ("b5", "d1", "e"),
            _pull_tiny,
            _pull_tiny_again,
            resume=True,
        ),
        Workload(
            "pull-macos",
            "the same pull on macOS, on a file system that refuses F_FULLFSYNC (SMB, some FUSE, exFAT)",
            ("a1",),
            _pull_tiny,
            _pull_tiny_again,
            platform="macos-refused",
            durable=False,
            ci_dynamic=False,
        ),
        Workload(
            "pull-macos-unordered",
            "the same pull on macOS, on a file system that refuses F_FULLFSYNC and F_BARRIERFSYNC: no "
            "ordering at all is left (a platform limit: verify finds the damage, ensure --verify repairs it)",
            (),
            _pull_tiny,
            _pull_tiny_again,
            platform="macos-unordered",
            durable=False,
            ci_dynamic=False,
        ),
        Workload(
            "pull-eio",
            "the same pull when the sync of blobs/ fails with EIO",
            ("b3",),
            _eio_run,
            _pull_tiny_again,
            clean=lambda ctx: _clean_pull(ctx),
            ci_dynamic=False,
        ),
        Workload(
            "resume",
            "a pull resuming the staging file a killed pull left 1.5 MiB into the weights",
            ("d1",),
            _pull_tiny,
            _pull_tiny_again,
            prepare=_prepare_killed_pull,
            resume=True,
        ),
        Workload(
            "retry",
            "a pull whose weights arrive with a flipped byte once: discarded, fetched again",
            ("d2",),
            _retry_run,
            _pull_tiny_again,
            resume=True,
            ci_dynamic=False,
        ),
        Workload(
            "concurrent",
            "two processes pulling two tags of one model; the second writes its manifest while the "
            "first has renamed the last blob and not yet synced blobs/",
            ("b1",),
            _concurrent_run,
            _concurrent_again,
            names=(TINY, TINY_V1),
        ),
        Workload("import", "a bundle import into a new store", (), _import_run, _import_again),
        Workload("create", "create from a Modelfile and a GGUF into a new store", (), _create_run, _create_again),
        Workload(
            "rm-prune",
            "rm of a model sharing its weights with another, then prune",
            ("b2",),
            _rm_prune_run,
            _rm_prune_again,
            prepare=_two_models,
            names=(TINY, OTHER),
        ),
        Workload(
            "evict",
            "the mirror evicting its least recently served model to make room",
            ("b2",),
            _evict_run,
            _evict_again,
            prepare=_prepare_mirror,
            names=(TINY, OTHER),
            orphans_ok=True,
        ),
        Workload(
            "ollama-pull",
            "Ollama's own pull (no fsync at all), then ollama-seed pulls a model sharing its weights",
            ("b1", "c1", "c2"),
            _ollama_then_pull,
            _ollama_then_pull_again,
            names=(TINY, OTHER),
            foreign_actor="ollama",
            clean=_ollama_clean,
        ),
        Workload(
            "verify-repair",
            "ensure --verify repairing zero-filled weights (what Ollama's sparse Truncate leaves)",
            ("b4",),
            _verify_repair,
            _verify_repair_again,
            prepare=_prepare_damaged,
            clean=lambda ctx: _clean_pull(ctx),
        ),
        Workload(
            "export-oci",
            "an export to an OCI image layout directory",
            ("b6",),
            _export_run,
            None,
            prepare=_pull_tiny,
            extra_root="oci",
        ),
    ]
}


def _clean_pull(ctx: Ctx) -> dict[str, bytes]:
    ref = ctx.work / "clean"
    anyio.run(pull, Ctx(ref, ctx.work), TINY, registry())
    return tree(ref)


@dataclass
class Recorded:
    """One recorded workload: the log, what the disk held before, and the clean end."""

    workload: Workload
    rec: Recorder
    contents: dict[int, bytes]
    modes: dict[int, int]
    clean: dict[str, bytes]
    ctx: Ctx
    error: BaseException | None = None
    foreign: frozenset[int] = frozenset()  # inodes Ollama's writer created

    @property
    def blobs(self) -> dict[str, bytes]:
        return known_blobs()[0]

    @property
    def kinds(self) -> dict[str, str]:
        return known_blobs()[1]


def record(w: Workload, work: Path) -> Recorded:
    """Prepare, record and keep everything the explorer needs of workload *w* (under *work*)."""
    root = work / "models"
    root.mkdir(parents=True)
    extra = [work / w.extra_root] if w.extra_root else []
    for d in extra:
        d.mkdir()
    ctx = Ctx(root, work, extra, list(w.names))
    w.prepare(ctx)
    rec = Recorder([root, *extra])
    contents: dict[int, bytes] = {}
    modes: dict[int, int] = {}
    for rel, ino in rec.initial.items():
        i, _, path = rel.partition(":")
        p = rec.roots[int(i)] / path
        contents[ino] = p.read_bytes()
        modes[ino] = p.stat().st_mode & 0o7777
    base = oscalls.emulate("macos" if w.platform.startswith("macos") else "linux")
    if w.platform == "macos-refused":
        rec.refuse = {F_FULLFSYNC}
    elif w.platform == "macos-unordered":
        rec.refuse = {F_FULLFSYNC, F_BARRIERFSYNC}
    ctx.rec = rec
    error = None
    with recording(rec, base, full_fsync=F_FULLFSYNC if w.platform.startswith("macos") else None):
        try:
            with rec.as_actor(""):
                w.run(ctx)
        except (Killed, ollama_seed.SeedError) as exc:
            error = exc
    ctx.rec = None
    clean = w.clean(ctx) if w.clean is not None else tree(root)
    foreign = frozenset(
        op.ino for op in rec.ops if op.kind == "creat" and op.actor == w.foreign_actor and w.foreign_actor
    )
    return Recorded(w, rec, contents, modes, clean, ctx, error, foreign)


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
