"""The OS-calls layer (store.oscalls): each fallback for what macOS and Windows lack, and whole workflows with the
os module reduced to what each offers (``OLLAMA_SEED_EMULATE``) writing byte-identical stores.

.ci/run also runs the entire suite under each emulation.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ollama_seed.store import oscalls
from ollama_seed.store.locks import pid_alive
from ollama_seed.store.oscalls import Platform, emulate
from tests.support import MIB
from tests.support.cli import run_cli, start_cli
from tests.support.invariants import assert_store_ok, tree
from tests.support.mirror import serving
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

KINDS = ["linux", "macos", "windows"]
REPO = "library/everywhere"


@pytest.fixture(params=KINDS)
def plat(request: pytest.FixtureRequest) -> Platform:
    return emulate(request.param)


def test_the_emulation_asked_for_is_in_force() -> None:
    wanted = os.environ.get("OLLAMA_SEED_EMULATE", "")
    if wanted:
        assert oscalls.host.kind == wanted and oscalls.host.emulated
        assert oscalls.host.os_fallocate is None and oscalls.host.os_fdatasync is None
    else:
        assert oscalls.host.kind == "linux" and not oscalls.host.emulated
        assert oscalls.host.os_fallocate is os.posix_fallocate


@pytest.mark.parametrize(
    ("kind", "missing", "present"),
    [
        (
            "linux",
            [],
            [
                "os_fallocate",
                "os_fadvise",
                "os_pread",
                "os_pwrite",
                "os_preadv",
                "os_readv",
                "os_fdatasync",
                "os_fchmod",
                "o_nofollow",
                "o_directory",
                "dir_fsync",
            ],
        ),
        (
            "macos",
            ["os_fallocate", "os_fadvise", "os_fdatasync", "os_preadv"],
            ["os_pread", "os_pwrite", "os_readv", "os_fchmod", "o_nofollow", "o_directory", "dir_fsync"],
        ),
        (
            "windows",
            [
                "os_fallocate",
                "os_fadvise",
                "os_fdatasync",
                "os_preadv",
                "os_readv",
                "os_pread",
                "os_pwrite",
                "os_fchmod",
                "o_nofollow",
                "o_directory",
                "dir_fsync",
            ],
            [],
        ),
    ],
)
def test_each_platform_offers_what_it_has(kind: str, missing: list[str], present: list[str]) -> None:
    p = emulate(kind)
    assert [n for n in missing if getattr(p, n)] == []
    assert [n for n in present if not getattr(p, n)] == []
    assert p.sharing_violations == (kind == "windows")


# what the Platform wraps because some system lacks it; called anywhere else, it fails there
_WRAPPED = re.compile(
    r"\bos\.(readv|writev|preadv|pwritev|pread|pwrite|posix_fallocate|posix_fadvise|fdatasync)\b(?!\s*=)"
)


def test_only_the_os_calls_layer_calls_what_windows_or_macos_lack() -> None:
    """``os.readv`` in three bundle readers passed every emulation suite yet would fail on Windows,
    which has none: such calls go through :mod:`store.oscalls`, whose fallbacks the emulations test."""
    package = Path(oscalls.__file__).resolve().parents[1]
    found = [
        f"{path.relative_to(package)}:{n}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name not in ("oscalls.py", "native.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _WRAPPED.search(line.split("#", 1)[0]) and "``" not in line
    ]
    assert found == [], "call these through store.oscalls.host:\n" + "\n".join(found)


@pytest.mark.parametrize("kind", ["linux", "macos", "windows"])
def test_readinto_reads_with_or_without_readv(kind: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    buf = bytearray(4)
    fd = os.open(tmp_path / "f", os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        got = [emulate(kind).readinto(fd, memoryview(buf)) for _ in range(4)]
    finally:
        os.close(fd)
    assert got == [4, 4, 2, 0] and buf[:2] == b"89"


def test_an_unknown_emulation_is_refused() -> None:
    with pytest.raises(ValueError, match="macos, windows or linux"):
        emulate("beos")


def test_positional_writes_from_many_threads_land_at_their_offsets(plat: Platform, tmp_path: Path) -> None:
    """Without pwrite a write is seek+write; eight threads on one descriptor must not interleave them."""
    path = tmp_path / "f"
    fd = plat.open_nofollow(path, os.O_RDWR | os.O_CREAT)
    piece = 64 * 1024
    try:
        plat.preallocate(fd, 8 * 16 * piece, tmp_path)

        def writer(k: int) -> None:
            for j in range(16):
                i = j * 8 + k
                plat.pwrite_all(fd, bytes([i % 251]) * piece, i * piece)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        buf = bytearray(piece)
        for i in range(128):
            assert plat.pread(fd, piece, i * piece) == bytes([i % 251]) * piece, i
            assert plat.preadinto(fd, memoryview(buf), i * piece) == piece and buf == bytes([i % 251]) * piece
        assert plat.pread(fd, 10, 128 * piece) == b""
    finally:
        os.close(fd)
    assert path.stat().st_size == 128 * piece


def test_preallocate_without_fallocate_checks_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plat = emulate("windows")
    fd = plat.open_nofollow(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        plat.preallocate(fd, 5 * MIB, tmp_path)
        assert os.fstat(fd).st_size == 5 * MIB
        import shutil

        real = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(shutil, "disk_usage", lambda _p: real._replace(free=MIB))
        with pytest.raises(OSError, match="bytes needed") as info:
            plat.preallocate(fd, 2 * MIB, tmp_path)
        assert info.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_open_nofollow_refuses_links_without_o_nofollow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plat = emulate("windows")
    real = tmp_path / "real"
    real.write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(OSError, match="symbolic link") as info:
        plat.open_nofollow(link, os.O_RDONLY)
    assert info.value.errno == errno.ELOOP
    os.close(plat.open_nofollow(real, os.O_RDONLY))
    # a link swapped in between the lstat and the open is caught by comparing lstat and fstat
    target = tmp_path / "swapped"
    target.write_bytes(b"y")
    original_open = os.open

    def racing_open(path: Any, flags: int, mode: int = 0o777) -> int:
        if Path(path) == target:
            target.unlink()
            target.symlink_to(real)
        return original_open(path, flags, mode)

    monkeypatch.setattr(os, "open", racing_open)
    with pytest.raises(OSError, match="replaced by a link"):
        plat.open_nofollow(target, os.O_RDONLY)
    assert real.read_bytes() == b"x"


def test_replace_waits_for_another_holder_to_let_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Windows: the target is open (Ollama reading it, a virus scanner); replace retries until it closes."""
    plat = emulate("windows")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    fd = os.open(dst, os.O_RDONLY)
    threading.Timer(0.2, os.close, args=(fd,)).start()
    started = time.monotonic()
    plat.replace(src, dst)
    assert dst.read_bytes() == b"new" and time.monotonic() - started > 0.15  # it waited for the holder
    # held for longer than the retry window: a PermissionError, and nothing changed
    src.write_bytes(b"newer")
    monkeypatch.setattr(oscalls, "_REPLACE_RETRY_S", 0.2)
    with open(dst, "rb"), pytest.raises(PermissionError, match="open in this process"):
        plat.replace(src, dst)
    assert dst.read_bytes() == b"new" and src.read_bytes() == b"newer"


def test_remove_of_a_missing_file_is_quiet_and_of_an_open_file_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plat = emulate("windows")
    plat.remove(tmp_path / "nothing")
    f = tmp_path / "f"
    f.write_bytes(b"x")
    monkeypatch.setattr(oscalls, "_REPLACE_RETRY_S", 0.2)
    with open(f, "rb"), pytest.raises(PermissionError):
        plat.remove(f)
    plat.remove(f)
    assert not f.exists()


def test_directory_fsync_is_skipped_where_it_cannot_be_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = os.open

    def recording_open(p: Any, f: int, m: int = 0o777) -> int:
        opened.append(str(p))
        return real_open(p, f, m)

    monkeypatch.setattr(os, "open", recording_open)
    emulate("windows").fsync_dir(tmp_path)
    assert opened == []
    emulate("macos").fsync_dir(tmp_path)
    assert opened == [str(tmp_path)]


def test_pid_alive(plat: Platform) -> None:
    assert pid_alive(os.getpid(), plat)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid, plat)


# -- whole workflows, per platform: byte-identical stores ---------------------------------------------


@pytest.fixture(scope="module")
def model(docker_registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    m = make_model(tmp_path_factory.mktemp("model"), size_bytes=12 * MIB + 333, seed=41, one_byte_layer=True)
    seed_registry(docker_registry.url, REPO, "latest", m)
    return m


@pytest.mark.registry
@pytest.mark.parametrize("kind", KINDS)
def test_pull_resume_verify_bundle_and_serve_write_identical_stores(
    kind: str, docker_registry: DockerRegistry, model: BuiltModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"OLLAMA_SEED_EMULATE": kind}
    with ProxyThread(docker_registry.url, total_bps=8e6) as proxy:
        host = proxy.url.removeprefix("http://")
        name = f"{host}/{REPO}:latest"
        want_root = tmp_path / "expected"
        model.expected_store(want_root, host, REPO, "latest")
        want = tree(want_root)
        models = tmp_path / "models"
        pull = ("pull", "--insecure", "--progress", "plain", "--models-dir", str(models), name)

        # SIGKILL once the proxy has relayed 8 of the 12 MiB (~1.6 s of transfer at this rate); up to
        # 4 MiB of that may be in flight rather than on disk (see test_reliability_kill)
        proc = start_cli(*pull, env=env, log=tmp_path / "killed.log")
        deadline = time.monotonic() + 60
        while proxy.stats.snapshot()["bytes_down"] < 8 * MIB and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
        assert proc.wait(10) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
        assert_store_ok(models)
        first = proxy.stats.snapshot()["bytes_down"]
        again = run_cli(*pull, env=env)
        assert again.returncode == 0, again.stderr
        resumed = proxy.stats.snapshot()["bytes_down"] - first
        assert resumed < model.total_size - 3 * MIB, f"the second run fetched {resumed} bytes: it did not resume"
    assert tree(models) == want
    assert_store_ok(models)

    verify = run_cli("verify", "--models-dir", str(models), env=env)
    assert verify.returncode == 0, verify.stderr

    bundle = tmp_path / "m.tar"
    exported = run_cli("export", "--models-dir", str(models), "-o", str(bundle), name, env=env)
    assert exported.returncode == 0, exported.stderr
    imported_root = tmp_path / "imported"
    imported = run_cli("import", "--models-dir", str(imported_root), str(bundle), env=env)
    assert imported.returncode == 0, imported.stderr
    assert tree(imported_root) == want

    monkeypatch.setattr(oscalls, "host", emulate(kind))  # the mirror reads with this platform's calls
    with serving(models) as info:
        mirror = f"127.0.0.1:{info.port}"
        mirrored_root = tmp_path / "mirrored"
        got = run_cli(
            "pull",
            "--insecure",
            "--progress",
            "none",
            "--models-dir",
            str(mirrored_root),
            f"{mirror}/{REPO}:latest",
            env=env,
        )
        assert got.returncode == 0, got.stderr
    want_mirror = tmp_path / "expected-mirror"
    model.expected_store(want_mirror, mirror, REPO, "latest")
    assert tree(mirrored_root) == tree(want_mirror)


# -- names and paths that Windows and macOS treat differently ------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("gpt-oss:20b", None),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", None),
        ("localhost:5000/library/x:latest", "host with a port"),
        ("registry.example/library/con:latest", "reserved device name"),
        ("registry.example/library/x:Aux.v1", "reserved device name"),
        ("registry.example/lpt9/x:latest", "reserved device name"),
        ("registry.example/library/console:latest", None),
        ("registry.example/library/x:v1.", "ends with '.'"),
    ],
)
def test_names_windows_cannot_store(name: str, problem: str | None) -> None:
    from ollama_seed.core.reference import ModelName, windows_path_problem

    got = windows_path_problem(ModelName.parse(name))
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_a_windows_layout_refuses_a_host_with_a_port_before_anything_is_written(tmp_path: Path) -> None:
    from ollama_seed.core.errors import InvalidName
    from ollama_seed.core.layout import ModelsLayout
    from ollama_seed.core.reference import ModelName

    lay = ModelsLayout(tmp_path, windows_names=True)
    with pytest.raises(InvalidName, match=r"cannot be a folder name on Windows"):
        lay.manifest(ModelName.parse("localhost:5000/library/x"))
    assert (
        lay.manifest(ModelName.parse("x")) == tmp_path / "manifests" / "registry.ollama.ai" / "library" / "x" / "latest"
    )
    assert ModelsLayout(tmp_path).manifest(ModelName.parse("localhost:5000/library/x")).parts[-4] == "localhost:5000"


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("C:\\Users\\ada\\.ollama\\models", "C:\\Users\\ada\\.ollama\\models"),
        ("C:\\" + "d" * 150, "\\\\?\\C:\\" + "d" * 150),
        ("\\\\?\\C:\\" + "d" * 150, "\\\\?\\C:\\" + "d" * 150),
        ("\\\\server\\share\\" + "m" * 150, "\\\\?\\UNC\\server\\share\\" + "m" * 150),
    ],
)
def test_windows_long_paths_get_the_extended_prefix(root: str, expected: str) -> None:
    assert oscalls.windows_long_path(root) == expected


@pytest.mark.anyio
async def test_two_spellings_of_one_name_never_make_two_manifests(tmp_path: Path) -> None:
    """Case-insensitive APFS and NTFS would merge them silently; Ollama keeps the first spelling
    (getExistingName), on every file system, and so does ollama-seed."""
    import ollama_seed
    from tests.support.fake_registry import FakeRegistry

    m = make_model(size_bytes=MIB + 5, seed=3)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", m)
    models = tmp_path / "models"
    await ollama_seed.apull("reg.test/library/tiny:latest", models_dir=models, transport=reg.transport())
    requests = len(reg.blob_requests())
    await ollama_seed.apull("REG.test/Library/Tiny:LATEST", models_dir=models, transport=reg.transport())
    manifests = sorted(
        p.relative_to(models / "manifests").as_posix() for p in (models / "manifests").rglob("*") if p.is_file()
    )
    assert manifests == ["reg.test/library/tiny/latest"]
    assert len(reg.blob_requests()) == requests


def test_a_listening_socket_can_be_rebound_at_once_on_posix(plat: Platform) -> None:
    import socket

    with socket.socket() as sock:
        plat.listen_options(sock)  # emulated Windows keeps the host's POSIX semantics: the real one is exclusive
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
