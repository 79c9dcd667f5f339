"""The five checks every crash state must pass (issue 22).

1. No blob at its final name whose bytes do not hash to its name, and every blob readable by
   Ollama (mode 0644).
2. Every manifest's blobs are present and whole, or the model is absent; no manifest of ours torn.
3. What the user was told is done before the crash (a model pulled, created or imported, an
   export) is still complete.
4. The same command run again (after a reboot) completes with the store byte-identical to a
   clean run; a resumed download trusts only bytes that are the blob's, keeps what its state
   says was made durable, and reports no digest mismatch (so no mirror is blamed).
5. ``list``, ``verify``, ``rm``, ``create``, ``prune``, ``serve``'s start and the mirror's
   eviction work on the state.

Files Ollama's own writer left (a workload's foreign actor) are not judged by 1-3: Ollama syncs
nothing. Damage that was on disk before the workload, unchanged, is not either. Checks 4 and 5
judge everything: the tool must repair what Ollama or a crash left.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import io
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from ollama_seed.cli.main import main as cli
from ollama_seed.core.digest import Digest
from ollama_seed.core.errors import RegistryProtocolError
from ollama_seed.core.manifest import Manifest
from ollama_seed.core.plan import BlobPlan
from ollama_seed.core.reference import ModelName
from ollama_seed.store import oscalls
from ollama_seed.store.store import ModelStore
from tests.support.invariants import tree

from .model import Fs
from .workloads import Ctx, Outcome, Recorded, run_recovery

__all__ = [
    "Problem",
    "again_check",
    "coarse_key",
    "command_checks",
    "damage",
    "materialize",
    "rebooted",
    "resume_claims",
    "static_checks",
    "store_key",
]


@dataclass(frozen=True)
class Problem:
    check: str
    message: str


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Judge:
    def __init__(self, r: Recorded, fs: Fs) -> None:
        self.r, self.fs = r, fs
        self.damaged: set[str] = r.ctx.data.get("damaged", set())

    def foreign(self, path: str) -> bool:
        return self.fs.names.get(path, -1) in self.r.foreign

    def old_damage(self, path: str) -> bool:
        """Damage that was there before the workload, untouched (not the workload's doing)."""
        ino = self.fs.names.get(path, -1)
        return path in self.damaged and ino == self.r.rec.initial.get(path) and not self.fs.versions.get(ino, ())

    def hashes_to(self, path: str, hexd: str) -> bool:
        return self.fs.sha(path).hex() == hexd

    def whole(self, digest: Digest, size: int) -> str | None:
        path = f"0:blobs/{digest.filename}"
        data = self.fs.read(path)
        if data is None:
            return "missing"
        if len(data) != size:
            return f"{len(data)} bytes, not {size}"
        if not self.hashes_to(path, digest.hex) and not self.old_damage(path):
            return "bytes that do not hash to its name" + (" (all zeros)" if not data.strip(b"\0") else "")
        return None

    def manifests(self) -> Iterator[tuple[str, bytes]]:
        for path in self.fs.names:
            if path.startswith("0:manifests/") and path.count("/") == 4:
                yield path, self.fs.read(path) or b""


def static_checks(r: Recorded, fs: Fs, done: frozenset[str]) -> list[Problem]:
    """Checks 1-3, on the replayed files (no disk)."""
    j = _Judge(r, fs)
    out: list[Problem] = []
    for path in fs.names:
        if not path.startswith("0:blobs/") or j.foreign(path):
            continue
        name = path.removeprefix("0:blobs/")
        digest = Digest.from_filename(name)
        if digest is None:
            out.append(Problem("1", f"a stray file in blobs/: {name}"))
            continue
        what = r.kinds.get(digest.hex, "a")
        if not j.hashes_to(path, digest.hex) and not j.old_damage(path):
            data = fs.read(path) or b""
            zeros = " (all zeros)" if not data.strip(b"\0") else ""
            out.append(Problem("1", f"{what} blob holds {len(data)} bytes that do not hash to its name{zeros}"))
        mode = fs.modes.get(fs.names[path], 0) & 0o777
        if mode != 0o644:
            out.append(Problem("1", f"{what} blob has mode {mode:o}, not 0644 (Ollama may not read it)"))
    for path, data in j.manifests():
        if j.foreign(path):
            continue
        try:
            manifest = Manifest.parse(data, source=path)
        except RegistryProtocolError:
            out.append(Problem("2", f"our manifest {path} is torn ({len(data)} bytes)"))
            continue
        for layer in manifest.blobs:
            problem = j.whole(layer.digest, layer.size)
            if problem:
                out.append(Problem("2", f"a manifest names its {layer.kind} blob, which is {problem}"))
    if r.workload.durable:
        out.extend(_reported(r, j, done))
    return out


def _reported(r: Recorded, j: _Judge, done: frozenset[str]) -> list[Problem]:
    out: list[Problem] = []
    for message in sorted(done):
        what, _, name = message.partition(" ")
        if what != "done":
            continue
        if name == "export":
            out.extend(_layout_problems(j))
            continue
        name = name.removeprefix("import ")
        ref = ModelName.parse(name)
        data = j.fs.read("0:manifests/" + "/".join(ref.path_parts))
        if data is None:
            out.append(Problem("3", f"{ref.display} was reported done, but its manifest is gone"))
            continue
        with contextlib.suppress(RegistryProtocolError):
            for layer in Manifest.parse(data).blobs:
                problem = j.whole(layer.digest, layer.size)
                if problem:
                    out.append(Problem("3", f"{ref.display} was reported done, but its {layer.kind} blob is {problem}"))
    return out


def _layout_problems(j: _Judge) -> list[Problem]:
    """The exported OCI layout (root 1, ``layout/``): index.json and every blob it reaches."""
    files = {p.removeprefix("1:layout/"): j.fs.read(p) or b"" for p in j.fs.names if p.startswith("1:layout/")}
    if "index.json" not in files or "oci-layout" not in files:
        return [Problem("3", "the export was reported done, but index.json or oci-layout is gone")]
    todo = [d["digest"] for d in json.loads(files["index.json"]).get("manifests", [])]
    out: list[Problem] = []
    while todo:
        digest = todo.pop()
        data = files.get("blobs/sha256/" + digest.removeprefix("sha256:"))
        if data is None or "sha256:" + _sha(data) != digest:
            out.append(Problem("3", f"the export was reported done, but its blob {digest[:19]}… is missing or wrong"))
            continue
        with contextlib.suppress(ValueError, AttributeError):
            doc = json.loads(data)
            if isinstance(doc, dict) and "layers" in doc:
                todo += [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]
    return out


# -- on disk ---------------------------------------------------------------------------------------


def materialize(r: Recorded, fs: Fs, dest: Path) -> list[Path]:
    """Write the state under *dest* (one directory per recorded root); the roots."""
    roots = [dest / f"root{i}" for i in range(len(r.rec.roots))]
    for d in sorted(fs.dirs, key=lambda x: x.count("/") + (0 if x.endswith(":") else 1)):
        i, _, rel = d.partition(":")
        (roots[int(i)] / rel).mkdir(parents=True, exist_ok=True)
    for path, ino in fs.names.items():
        i, _, rel = path.partition(":")
        p = roots[int(i)] / rel
        p.write_bytes(fs.read(path) or b"")
        os.chmod(p, fs.modes.get(ino, 0o644) & 0o7777)
    _restamp(r, fs, roots[0])
    return roots


def _restamp(r: Recorded, fs: Fs, root: Path) -> None:
    """A stamp of store/verified names the file it vouches for by device and inode, which a copy
    changes: rewrite each stamp that named the very file now at its blob path for the copy, as if
    every time the kernel kept matched (a power cut keeps an inode's times and loses its data)."""
    try:
        from ollama_seed.store import verified
    except ImportError:
        return
    for path in fs.names:
        if not path.startswith("0:.ollama-seed/verified/"):
            continue
        name = path.rsplit("/", 1)[1]
        blob = fs.names.get(f"0:blobs/{name}")
        if blob is None or not _stamp_matches(r, fs, path, blob):
            continue
        target = root / "blobs" / name
        (root / ".ollama-seed" / "verified" / name).write_text(verified._identity(os.lstat(target)))


class RebootedPlatform(oscalls.Platform):
    """This machine after a reboot: another boot id (when the code asks for one)."""

    def boot_id(self) -> bytes:
        return b"boot-2".ljust(16, b"\0")


@contextlib.contextmanager
def rebooted() -> Iterator[None]:
    base = oscalls.emulate("linux")
    plat = RebootedPlatform(base.kind, **{k: v for k, v in vars(base).items() if k != "kind" and not k.startswith("_")})
    old, oscalls.host = oscalls.host, plat
    try:
        yield
    finally:
        oscalls.host = old


def _copy(src: list[Path], dest: Path, *, link: bool = False) -> list[Path]:
    """A copy of the state; with *link*, files in ``blobs/`` and ``manifests/`` are hard links
    (the code only ever replaces or removes those, never writes into them: invariant I1)."""
    out = []
    for i, root in enumerate(src):
        target = dest / f"root{i}"

        def copy(s: str, d: str, root: Path = root) -> object:
            rel = Path(s).relative_to(root).parts
            if link and rel and rel[0] in ("blobs", "manifests"):
                os.link(s, d)
                return d
            return shutil.copy2(s, d)

        shutil.copytree(root, target, symlinks=True, copy_function=copy)
        if i == 0:
            _carry_stamps(root, target)
        out.append(target)
    return out


def _carry_stamps(src: Path, dst: Path) -> None:
    """A copy changes every file's inode or change time: a stamp (store/verified) that matched its
    blob in *src* is made to match the copied blob in *dst*, one that did not stays as it is."""
    try:
        from ollama_seed.store import verified
    except ImportError:
        return
    stamps = src / ".ollama-seed" / "verified"
    if not stamps.is_dir():
        return
    for stamp in stamps.iterdir():
        blob = src / "blobs" / stamp.name
        with contextlib.suppress(OSError):
            if stamp.read_text() == verified._identity(os.lstat(blob)):
                (dst / ".ollama-seed" / "verified" / stamp.name).write_text(
                    verified._identity(os.lstat(dst / "blobs" / stamp.name))
                )


def _referenced(files: dict[str, bytes]) -> set[str]:
    refs: set[str] = set()
    for path, data in files.items():
        if path.startswith("manifests/"):
            with contextlib.suppress(RegistryProtocolError):
                refs |= {f"blobs/{layer.digest.filename}" for layer in Manifest.parse(data).blobs}
    return refs


def _compare(r: Recorded, got: dict[str, bytes]) -> str | None:
    want = r.clean
    if r.workload.orphans_ok:  # an interrupted removal leaves blobs no manifest names: prune's
        refs = _referenced(got)
        got = {k: v for k, v in got.items() if not k.startswith("blobs/") or k in refs}
    if r.workload.foreign_actor:  # Ollama's leftovers (…-partial) are Ollama's to clean
        got = {k: v for k, v in got.items() if not k.endswith("-partial")}
        want = {k: v for k, v in want.items() if not k.endswith("-partial")}
    if got == want:
        return None
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    parts = [
        f"{what}: {', '.join(p[:40] for p in items[:2])}"
        for what, items in (("missing", missing), ("extra", extra), ("different", differ))
        if items
    ]
    return "; ".join(parts)


REBOOT = b"boot-2".ljust(16, b"\0")


@functools.cache
def _knows_boots() -> bool:
    return "boot_id" in inspect.signature(BlobPlan.from_state).parameters


def _from_state(raw: bytes, digest_hex: str, size: int) -> Any:
    """The code's own decision on a resume state, as after a reboot (when it knows boots)."""
    extra = {"boot_id": REBOOT} if _knows_boots() else {}
    return BlobPlan.from_state(raw, digest_hex=digest_hex, size=size, **extra)


def resume_claims(r: Recorded, fs: Fs, latest: dict[str, int] | None = None) -> tuple[list[Problem], tuple[Any, ...]]:
    """What a resume after a reboot would trust of each staging file (check 4, in memory): only
    the blob's own bytes, and at least what its state says was made durable. Also a summary of
    the staging files for grouping states whose commands behave alike."""
    out: list[Problem] = []
    summary: list[Any] = []
    corrupt: dict[str, set[int]] = r.ctx.data.get("corrupt", {})
    prefix = "0:.ollama-seed/staging/"
    for path in sorted(fs.names):
        if not path.startswith(prefix) or not path.endswith(".state"):
            continue
        stem = path[len(prefix) : -len(".state")]
        digest = Digest.from_filename(stem)
        blob = r.blobs.get(digest.hex) if digest is not None else None
        data = fs.read(path[: -len(".state")] + ".data")
        if digest is None or blob is None or data is None or len(data) != len(blob):
            summary.append((stem, "fresh"))
            continue
        plan = _from_state(fs.read(path) or b"", digest.hex, len(blob))
        if plan is None:
            summary.append((stem, "fresh"))
            continue
        skip = corrupt.get(digest.hex, set())
        bad = 0  # pieces of which the resume would trust bytes that are not the blob's
        for i, n in enumerate(plan.done):
            start = i * plan.piece_size
            got = data[start : start + n]
            if got != blob[start : start + n]:
                fixed = bytearray(got)  # the byte the registry sent flipped is what it sent: not the resume's fault
                for o in skip:
                    if start <= o < start + n:
                        fixed[o - start] = blob[o]
                bad += bytes(fixed) != blob[start : start + n]
        what = r.kinds.get(digest.hex, "a")
        if bad:
            old = latest is not None and latest.get(path) != fs.names[path]
            why = "an older resume state came back beside a restarted data file: " if old else ""
            out.append(
                Problem("4", f"{why}a resume after a reboot would trust bytes of {what} blob that are not its own")
            )
        synced = getattr(plan, "synced", 0)
        if synced and plan.frontier < min(synced, len(blob)):
            out.append(
                Problem("4", f"a resume would keep {plan.frontier} bytes of {what} blob, not the {synced} made durable")
            )
        kept = plan.completed
        summary.append((stem, bool(bad), 0 if not kept else 2 if kept == len(blob) else 1))
    return out, tuple(summary)


def _verdicts(fs: Fs) -> Iterator[str]:
    """What the commands can tell apart in ``blobs/`` and ``manifests/``: each blob absent, whole
    or damaged (and its size); each manifest absent, unreadable or these bytes."""
    for path in sorted(fs.names):
        if path.startswith("0:manifests/"):
            data = fs.read(path) or b""
            yield f"{path} {fs.sha(path).hex() if _parses_bytes(data) else 'unreadable'}"
        elif path.startswith("0:blobs/"):
            digest = Digest.from_filename(path.removeprefix("0:blobs/"))
            size = len(fs.read(path) or b"")  # the right size and damaged is what only a hash tells
            yield f"{path} {digest is not None and fs.sha(path).hex() == digest.hex} {size}"
    for d in sorted(fs.dirs):
        if not d.startswith("0:.ollama-seed"):
            yield f"dir {d}"


def _parses_bytes(data: bytes) -> bool:
    try:
        Manifest.parse(data)
    except RegistryProtocolError:
        return False
    return True


def damage(r: Recorded, fs: Fs, summary: tuple[Any, ...]) -> bool:
    """Whether the state holds something to repair: a blob that does not hash to its name, a
    manifest that cannot be read, a stamp vouching for a damaged blob, or a staging file whose
    state a resume would trust wrongly. The CI bound runs the commands on such states first."""
    if any(len(item) == 3 and item[1] for item in summary):
        return True
    for verdict in _verdicts(fs):
        if verdict.endswith("unreadable") or (verdict.startswith("0:blobs/") and " False " in verdict):
            return True
    return any(p.startswith("0:.ollama-seed/verified/") and "vouches" in _stamp_verdict(r, fs, p) for p in fs.names)


def _stamp_verdict(r: Recorded, fs: Fs, path: str) -> str:
    blob_path = "0:blobs/" + path.rsplit("/", 1)[1]
    blob = fs.names.get(blob_path)
    if blob is not None and _stamp_matches(r, fs, path, blob):
        digest = Digest.from_filename(path.rsplit("/", 1)[1])
        if digest is None or fs.sha(blob_path).hex() != digest.hex:
            return f"{path} vouches for damage"
    return ""


def store_key(r: Recorded, fs: Fs) -> str:
    """States the commands of check 5 see alike (see :func:`_verdicts`)."""
    return hashlib.sha256("\n".join(_verdicts(fs)).encode()).hexdigest()


def coarse_key(r: Recorded, fs: Fs, summary: tuple[Any, ...]) -> str:
    """States that running the command again (check 4) sees alike: the same verdicts on blobs,
    manifests, staging files and stamps vouching for a damaged blob, the same files elsewhere in
    our state (temporary files aside)."""
    h = hashlib.sha256(repr(summary).encode())
    h.update("\n".join(_verdicts(fs)).encode())
    for path in sorted(fs.names):
        if path.startswith(("0:.ollama-seed/staging/", "0:.ollama-seed/tmp/", "0:blobs/", "0:manifests/")):
            continue
        if path.startswith("0:.ollama-seed/verified/"):
            h.update(_stamp_verdict(r, fs, path).encode())
        else:
            h.update(f"{path} {fs.sha(path).hex()}\n".encode())
    return h.hexdigest()


def _stamp_matches(r: Recorded, fs: Fs, stamp: str, blob: int) -> bool:
    fields = (fs.read(stamp) or b"").decode("ascii", "replace").split()
    by_id = r.rec.ids()
    return len(fields) == 6 and by_id.get(blob) == (int(fields[1]), int(fields[2]))


def again_check(r: Recorded, roots: list[Path], scratch: Path) -> list[Problem]:
    """Check 4: the same command again, after a reboot, on a copy of the state."""
    w = r.workload
    if w.again is None:
        return []
    with rebooted():
        copy = _copy(roots, scratch / "again")
        ctx = Ctx(copy[0], r.ctx.work, copy[1:], list(w.names), data=r.ctx.data)
        outcome = run_recovery(lambda o: w.again(ctx, o))  # type: ignore[misc]
        return _judge_again(r, outcome, tree(copy[0]))


def command_checks(r: Recorded, roots: list[Path], scratch: Path) -> list[Problem]:
    """Check 5: the commands, each on its own copy of the state."""
    with rebooted():
        return _commands(r, roots, scratch)


def _judge_again(r: Recorded, outcome: Outcome, got: dict[str, bytes]) -> list[Problem]:
    if outcome.error is not None:
        return [Problem("4", f"running it again failed: {type(outcome.error).__name__}: {outcome.error}")]
    out = [Problem("4", p) for p in outcome.problems]
    diff = _compare(r, got)
    if diff:
        out.append(Problem("4", f"running it again leaves a store unlike a clean run's ({diff})"))
    if outcome.mismatches and not r.ctx.data.get("corrupt"):
        out.append(Problem("4", "running it again reported a sha256 mismatch (a mirror would be blamed)"))
    return out


def _why(code: int, text: str) -> str:
    """A command's failure in words that do not change from state to state."""
    if "not a valid Ollama manifest" in text:
        return f"exit {code}, on an unreadable manifest"
    line = text.strip().splitlines()[-1] if text.strip() else ""
    return f"exit {code}: {line[:120]}"


def _run_cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = cli(list(argv))
    return code, buf.getvalue()


def _commands(r: Recorded, roots: list[Path], scratch: Path) -> list[Problem]:
    from .workloads import _modelfile

    out: list[Problem] = []
    root = roots[0]
    names = list(r.workload.names)
    present = [n for n in names if (root / "manifests" / Path(*ModelName.parse(n).path_parts)).exists()]
    unreadable = (
        [p for p in (root / "manifests").glob("*/*/*/*") if p.is_file() and not _parses(p)]
        if (root / "manifests").is_dir()
        else []
    )

    def attempt(label: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            out.append(Problem("5", f"{label} raised {type(exc).__name__}: {exc}"))
            return None

    res = attempt("list", lambda: _run_cli("list", "--models-dir", str(root)))
    if res is not None and res[0] != 0:
        out.append(Problem("5", f"list failed ({_why(*res)})"))
    res = attempt("verify", lambda: _run_cli("verify", "--models-dir", str(root)))
    if res is not None:
        if res[0] not in (0, 5):
            out.append(Problem("5", f"verify failed ({_why(*res)})"))
        for p in unreadable:
            if p.name not in res[1] and str(p) not in res[1]:
                out.append(Problem("5", "verify does not report an unreadable manifest"))
    for n, name in enumerate(present):
        copy = _copy(roots, scratch / f"rm-{n}", link=True)
        res = attempt(f"rm {name}", functools.partial(_run_cli, "rm", "--models-dir", str(copy[0]), name))
        if res is not None and res[0] != 0:
            out.append(Problem("5", f"rm failed ({_why(*res)})"))
    for name in names[:1]:
        copy = _copy(roots, scratch / "create", link=True)
        res = attempt(
            "create",
            functools.partial(
                _run_cli, "create", "--models-dir", str(copy[0]), name, "-f", str(_modelfile(r.ctx)), "--offline"
            ),
        )
        if res is not None and res[0] != 0:
            out.append(Problem("5", f"create failed ({_why(*res)})"))
    copy = _copy(roots, scratch / "prune", link=True)
    res = attempt("prune", lambda: _run_cli("prune", "--models-dir", str(copy[0])))
    if res is not None and res[0] != 0:
        out.append(Problem("5", f"prune failed ({_why(*res)})"))
    attempt("serve's start", lambda: out.extend(_serve_start(root)))
    copy = _copy(roots, scratch / "evict", link=True)
    attempt("the mirror's eviction", lambda: out.extend(_evictions(copy[0], present)))
    return out


def _parses(p: Path) -> bool:
    try:
        Manifest.parse(p.read_bytes())
    except (RegistryProtocolError, OSError):
        return False
    return True


def _serve_start(root: Path) -> list[Problem]:
    from ollama_seed.mirror.factory import create_app

    app = create_app(root, upstream="http://127.0.0.1:9", max_cache_size=1 << 40)

    async def start() -> list[Problem]:
        sent: list[dict[str, Any]] = []
        inbox = [{"type": "lifespan.startup"}]

        async def receive() -> dict[str, Any]:
            if inbox:
                return inbox.pop(0)
            await anyio.sleep_forever()
            raise AssertionError

        answered = anyio.Event()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            answered.set()

        async def lifespan() -> None:
            await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)  # type: ignore[arg-type]

        async with anyio.create_task_group() as tg:
            tg.start_soon(lifespan)
            with anyio.fail_after(10):
                await answered.wait()
            tg.cancel_scope.cancel()
        if sent[0]["type"] != "lifespan.startup.complete":
            return [Problem("5", f"serve's start failed: {sent[0].get('message')}")]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://mirror") as client:
            resp = await client.get("/v2/_catalog")
        if resp.status_code != 200:
            return [Problem("5", f"the mirror's catalog answered {resp.status_code}")]
        return []

    return anyio.run(start)


def _evictions(root: Path, present: list[str]) -> list[Problem]:
    from ollama_seed.mirror.budget import CacheBudget, model_key

    store = ModelStore(root)
    budget = CacheBudget(store, max_bytes=1 << 40)
    budget.start()
    out = []
    for name in present:
        ref = ModelName.parse(name)
        budget._evict(model_key(ref))
        if store.layout.manifest(ref).exists():
            out.append(Problem("5", f"the mirror could not evict {ref.display}"))
    return out


def mode_of(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)
