"""Local files and bytes into the store: one hashing pass, staging and the atomic install, a source
cache that spares re-hashing, and nothing installed when the source changes under the copy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from ollama_seed.core.errors import StoreError
from ollama_seed.store import ingest as ingest_mod
from ollama_seed.store.ingest import SourceChanged, ingest_bytes, ingest_file
from ollama_seed.store.locks import staging_in_use
from ollama_seed.store.store import ModelStore
from tests.support import MIB

MT = "application/vnd.ollama.image.model"


def blob_files(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.layout.blobs_dir.iterdir()) if store.layout.blobs_dir.is_dir() else []


def test_a_file_becomes_a_blob_with_its_digest_and_the_source_stays_separate(tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 7)
    src = tmp_path / "model.gguf"
    src.write_bytes(data)
    store = ModelStore(tmp_path / "models")
    seen: list[tuple[int, int]] = []
    layer, existed = ingest_file(store, src, MT, progress=lambda d, t: seen.append((d, t)))
    digest = hashlib.sha256(data).hexdigest()
    assert (str(layer.digest), layer.size, layer.media_type, existed) == (f"sha256:{digest}", len(data), MT, False)
    blob = store.layout.blob(layer.digest)
    assert blob.read_bytes() == data
    assert os.stat(blob).st_ino != os.stat(src).st_ino and os.stat(blob).st_nlink == 1  # a copy, not a link
    assert oct(os.stat(blob).st_mode & 0o777) == oct(0o644)
    assert seen[-1] == (len(data), len(data)) and len(seen) >= 3
    assert list(store.layout.staging_dir.iterdir()) == []
    src.write_bytes(b"edited")  # editing the source never reaches the store
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest


def test_a_known_source_is_not_read_again_and_a_touched_one_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(b"x" * 1000)
    store = ModelStore(tmp_path / "models")
    first, _ = ingest_file(store, src, MT)
    reads: list[int] = []
    real = ingest_mod._copy_in

    def counting(*a: Any, **k: Any) -> Any:
        reads.append(1)
        return real(*a, **k)

    monkeypatch.setattr(ingest_mod, "_copy_in", counting)
    again, existed = ingest_file(store, src, MT)
    assert again == first and existed and reads == []
    os.utime(src, ns=(1, 1))  # same bytes, another mtime: hashed again, same blob
    third, _ = ingest_file(store, src, MT)
    assert third == first and reads == [1]
    src.write_bytes(b"y" * 1000)
    fourth, _ = ingest_file(store, src, MT)
    assert fourth.digest != first.digest and reads == [1, 1]
    store.layout.blob(fourth.digest).unlink()  # the blob went away (rm, prune): the cache is not trusted
    fifth, existed = ingest_file(store, src, MT)
    assert fifth == fourth and not existed and store.layout.blob(fourth.digest).is_file()


def test_a_source_that_changes_during_the_copy_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(os.urandom(4 * MIB))
    store = ModelStore(tmp_path / "models")

    def writer(done: int, total: int) -> None:
        if done == ingest_mod.CHUNK:
            with open(src, "r+b") as f:
                f.seek(3 * MIB)
                f.write(b"changed")

    with pytest.raises(SourceChanged, match="changed while it was copied"):
        ingest_file(store, src, MT, progress=writer)
    assert blob_files(store) == [] and list(store.layout.staging_dir.iterdir()) == []


@pytest.mark.parametrize("what", ["dir", "missing", "fifo"])
def test_not_a_regular_file_is_refused(tmp_path: Path, what: str) -> None:
    src = tmp_path / "src"
    if what == "dir":
        src.mkdir()
    elif what == "fifo":
        os.mkfifo(src)  # refused before it is opened: opening a FIFO would wait for a writer
    store = ModelStore(tmp_path / "models")
    with pytest.raises(StoreError, match=r"not a regular file|cannot read"):
        ingest_file(store, src, MT)
    assert blob_files(store) == []


def test_bytes_become_a_blob_once(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    a = ingest_bytes(store, b'{"stop":["<end>"]}', "application/vnd.ollama.image.params")
    b = ingest_bytes(store, b'{"stop":["<end>"]}', "application/vnd.ollama.image.params")
    assert a == b and store.layout.blob(a.digest).read_bytes() == b'{"stop":["<end>"]}'
    assert blob_files(store) == [a.digest.filename]


def test_prune_spares_an_ingest_of_a_live_process(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.prepare()
    live = store.layout.staging_dir / f"ingest-file.{os.getpid()}-abcd1234"
    live.write_bytes(b"half")
    dead = store.layout.staging_dir / "ingest-file.999999999-abcd1234"
    dead.write_bytes(b"left by a killed run")
    report = store.prune(staging_in_use=staging_in_use(store))
    assert live.exists() and not dead.exists()
    assert report.removed_staging == (dead.name,)
