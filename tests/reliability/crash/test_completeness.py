"""The recording platform sees every state-changing call a pull makes under the store: checked
against ``strace`` of the same pull (issue 22).

A pull runs in a subprocess under ``strace -f -y`` (every thread, descriptors shown with their
paths), through the direct path over a real socket (worker threads ``pwrite`` the bodies), with
the :class:`~.record.RecordingPlatform` installed. Every system call that changes something under
the store (create, write, truncate, allocate, rename, unlink, mkdir, rmdir, sync, mode, owner,
clone) must have its logical operation in the recorder's log, and every logged operation its
system call: a new call that bypasses ``store/oscalls.py`` fails this test. Lock files are left
out (their content does not matter; a lock dies with the machine), and so are the resume
counters' stores into the memory map, which no system call shows (the recorder sees them through
``oscalls.poke``; their ``msync`` is checked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.asgi import RegistryServer

from .workloads import registry

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parents[3]
TRACED = "%file,%desc,fsync,fdatasync,ftruncate,fallocate,msync,fchmod,fchown,sync_file_range"
_LINE = re.compile(r"^(?:\[pid\s+\d+\]\s+)?(\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+|\?)")
_PATH = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FD = re.compile(r"\d+<([^>]*)>")


def _child(url: str, models: str, out: str) -> None:
    """In the traced process: the pull, recorded; the log as JSON."""
    import ollama_seed
    from tests.reliability.crash.record import Recorder, recording

    Path(models).mkdir()
    rec = Recorder([Path(models)])
    with recording(rec):
        ollama_seed.pull(f"{url}/library/tiny:latest", models_dir=models, connections=2, insecure=True)
    ops = [{"kind": o.kind, "path": o.path, "dst": o.dst, "ino": o.ino, "strength": o.strength} for o in rec.ops]
    inodes = {}
    for o in rec.ops:
        if o.kind == "creat":
            inodes[o.path] = o.ino
        elif o.kind == "rename" and o.path in inodes:
            inodes[o.dst] = inodes[o.path]
    Path(out).write_text(json.dumps({"ops": ops, "inodes": inodes, "bypasses": rec.bypasses}))


def _under(path: str, root: str) -> str | None:
    """``0:<relative>`` for a path in the store (lock files aside), as the recorder names it."""
    path = os.path.normpath(path)
    if path != root and not path.startswith(root + os.sep):
        return None
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    if rel.startswith(".ollama-seed/locks"):
        return None
    return f"0:{'' if rel == '.' else rel}"


def _joined(trace: str) -> list[str]:
    """The trace's lines, with each call other threads interrupted (``<unfinished ...>``, then
    ``<... call resumed>``) put back together."""
    pending: dict[str, str] = {}
    out = []
    for line in trace.splitlines():
        pid, _, rest = line.partition(" ")
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest.removesuffix("<unfinished ...>").rstrip()
        elif rest.startswith("<... ") and " resumed>" in rest:
            out.append(f"{pid} {pending.pop(pid, '')}{rest.split(' resumed>', 1)[1]}")
        else:
            out.append(line)
    return out


def _changes(trace: str, root: str) -> list[tuple[str, str, str]]:
    """The state-changing system calls under *root*: (what, path, second path)."""
    out: list[tuple[str, str, str]] = []
    for line in _joined(trace):
        m = _LINE.match(line)
        if m is None or m.group(4) in ("?",) or int(m.group(4)) < 0:
            continue
        call, args = m.group(2), m.group(3)
        paths = [p.encode().decode("unicode_escape") for p in _PATH.findall(args)]
        fds = _FD.findall(args)
        if call in ("openat", "open") and "O_CREAT" in args and paths:
            at = fds[0] if call == "openat" and fds and not paths[0].startswith("/") else ""
            where = _under(os.path.join(at, paths[0]) if at else paths[0], root)
            if where is not None:
                out.append(("creat", where, ""))
        elif call in ("rename", "renameat", "renameat2") and len(paths) == 2:
            a, b = _under(paths[0], root), _under(paths[1], root)
            if a is not None or b is not None:
                out.append(("rename", a or paths[0], b or paths[1]))
        elif call in ("unlink", "unlinkat") and paths:
            where = _under(paths[0], root)
            if where is not None:
                out.append(("rmdir" if "AT_REMOVEDIR" in args else "unlink", where, ""))
        elif call in ("rmdir", "mkdir", "mkdirat", "chmod", "fchmodat") and paths:
            where = _under(paths[0], root)
            if where is not None:
                out.append(({"mkdirat": "mkdir", "fchmodat": "chmod"}.get(call, call), where, ""))
        elif (
            call
            in (
                "write",
                "pwrite64",
                "pwritev",
                "pwritev2",
                "writev",
                "ftruncate",
                "fallocate",
                "fsync",
                "fdatasync",
                "fchmod",
                "fchown",
                "msync",
            )
            and fds
        ):
            where = _under(fds[0], root)
            if where is not None:
                out.append((call, where, ""))
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="strace is Linux's")
def test_the_recorder_sees_every_state_changing_call_of_a_pull(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    assert strace is not None, "strace is not installed (scripts/install-test-deps.sh installs it)"
    models, log, trace = tmp_path / "models", tmp_path / "log.json", tmp_path / "trace.txt"
    with RegistryServer(registry()) as srv:
        code = (
            "from tests.reliability.crash.test_completeness import _child; "
            f"_child({srv.url!r}, {str(models)!r}, {str(log)!r})"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("OLLAMA_SEED_EMULATE", None)
        done = subprocess.run(
            [
                strace,
                "-f",
                "-y",
                "-qq",
                "-s",
                "512",
                "-e",
                f"trace={TRACED}",
                "-o",
                str(trace),
                sys.executable,
                "-c",
                code,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    last = ([line for line in done.stderr.splitlines() if line.strip()] or ["(no stderr)"])[-1]
    # the cause first: pytest's summary line shows only the first line of the message
    assert done.returncode == 0, f"the traced pull exited {done.returncode}: {last}\n{done.stderr[-2000:]}"
    recorded = json.loads(log.read_text())
    assert recorded["bypasses"] == []
    ops, inodes = recorded["ops"], recorded["inodes"]
    root = os.path.normpath(str(models))
    calls = _changes(trace.read_text(), root)
    assert len(calls) > 50, f"strace saw too little to compare: {calls[:5]}"

    created = {o["path"] for o in ops if o["kind"] == "creat"}
    renamed = {(o["path"], o["dst"]) for o in ops if o["kind"] == "rename"}
    unlinked = {o["path"] for o in ops if o["kind"] == "unlink"}
    made = {o["path"] for o in ops if o["kind"] == "mkdir"}
    removed = {o["path"] for o in ops if o["kind"] == "rmdir"}
    written = {o["ino"] for o in ops if o["kind"] in ("write", "trunc")}
    synced = {o["ino"] for o in ops if o["kind"] == "fsync"}
    dir_synced = {o["path"] for o in ops if o["kind"] == "fsync_dir"}
    moded = {o["ino"] for o in ops if o["kind"] == "attr"}

    def ino(path: str) -> int:
        return int(inodes.get(path, -1))

    missed = []
    for call, path, other in calls:
        if path == "0:" and call == "mkdir":
            continue  # the models directory the test made before recording
        seen = {
            "creat": path in created,
            "rename": (path, other) in renamed,
            "unlink": path in unlinked,
            "mkdir": path in made,
            "rmdir": path in removed,
            "chmod": path in made or ino(path) in moded,  # mkdir's exact mode, or a staged file's
            "fchmod": ino(path) in moded,
            "fchown": ino(path) in moded,
            "fsync": ino(path) in synced or path in dir_synced,
            "fdatasync": ino(path) in synced,
            "msync": ino(path) in synced,
        }.get(call, ino(path) in written)  # write, pwrite64, ftruncate, fallocate, ...
        if not seen:
            missed.append(f"{call} {path} {other}".strip())
    assert missed == [], f"state-changing calls the recorder did not see (bypasses of oscalls): {missed[:10]}"

    seen_calls = {(c, p) for c, p, _ in calls}
    for o in ops:
        if o["kind"] in ("creat", "unlink", "mkdir", "rmdir"):
            assert (o["kind"], o["path"]) in seen_calls, f"recorded {o['kind']} {o['path']} but strace saw no call"
