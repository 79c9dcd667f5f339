"""The repair that ``verify`` advises repairs, and ``pull`` never says "success"
over a corrupt blob, yet reads nothing twice.

The decision (docs/design.md, "Reusing a blob"): Ollama reuses any blob of the right size; ollama-seed
reuses one without reading it only when it hashed that very file itself and it has not changed since
(store/verified). A blob nobody here hashed, or one that changed, is hashed once by the pull, and
fetched again only if it is corrupt. ``verify`` forgets what it finds damaged, so its advice, a pull,
repairs even damage that changed no file time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_seed import ModelStore
from ollama_seed.cli.main import main
from ollama_seed.core.digest import Digest
from ollama_seed.store import verified
from tests.support.mirror import serving
from tests.support.model import BuiltModel, make_model

REPO, TAG = "library/demo", "v1"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, BuiltModel]]:
    """A loopback registry (ollama-seed's own mirror over a store) holding one small model."""
    model = make_model(size_bytes=300_000, seed=7)
    model.expected_store(tmp_path / "registry", "registry.ollama.ai", REPO, TAG)
    with serving(tmp_path / "registry") as info:
        yield f"127.0.0.1:{info.port}/{REPO}:{TAG}", model


def _flip(path: Path, at: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _pull(name: str, models: Path, *extra: str) -> int:
    return main(["pull", "--insecure", "--progress", "none", "--models-dir", str(models), name, *extra])


def _pulled_then_damaged(name: str, model: BuiltModel, models: Path) -> Path:
    """Pull *name* into *models*, flip a byte of its weights; the blob's path."""
    assert _pull(name, models) == 0
    blob = models / "blobs" / f"sha256-{model.model_layer.hex}"
    _flip(blob)
    return blob


def test_pull_fetches_again_a_blob_damaged_in_the_store(
    served: tuple[str, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, model = served
    models = tmp_path / "models"
    blob = _pulled_then_damaged(name, model, models)
    assert main(["verify", "--models-dir", str(models)]) == 5
    err = capsys.readouterr().err
    assert "failed verification" in err and f"ollama-seed pull --models-dir {models} " in err
    assert _pull(name, models) == 0  # before: the damaged blob was "reused" and the pull said success
    assert "1 blob(s)" not in capsys.readouterr().err
    assert main(["verify", "--models-dir", str(models)]) == 0
    assert blob.read_bytes() == model.model_layer.read_bytes()


def test_verify_finds_damage_no_file_time_shows_and_its_advice_repairs_it(
    served: tuple[str, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bit rot: the bytes change, the stamp still matches (simulated by stamping after the damage)."""
    name, model = served
    models = tmp_path / "models"
    blob = _pulled_then_damaged(name, model, models)
    digest = Digest(model.model_layer.hex)
    verified.stamp(ModelStore(models).layout, digest)
    assert _pull(name, models) == 0  # a stamped blob is trusted: a pull costs a stat per blob
    assert blob.read_bytes() != model.model_layer.read_bytes()
    assert main(["verify", "--models-dir", str(models), name]) == 5
    assert not verified.is_stamped(ModelStore(models).layout, digest)
    capsys.readouterr()
    assert _pull(name, models) == 0  # the advice works
    assert blob.read_bytes() == model.model_layer.read_bytes()


def test_a_pull_over_an_intact_store_reads_no_blob(
    served: tuple[str, BuiltModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _model = served
    models = tmp_path / "models"
    assert _pull(name, models) == 0
    hashed: list[Path] = []
    import ollama_seed.store.store as store_module
    from ollama_seed.store.fsutil import sha256_file as real

    def counting(p: Path) -> Any:
        hashed.append(p)
        return real(p)

    monkeypatch.setattr(store_module, "sha256_file", counting)
    assert _pull(name, models) == 0
    assert hashed == []  # every blob was installed (and stamped) by the first pull


def test_blobs_nobody_here_hashed_are_hashed_once(
    served: tuple[str, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store Ollama wrote (no stamps): the first pull reads each blob once, the second none."""
    name, model = served
    models = tmp_path / "models"
    host = name.split("/")[0]
    model.expected_store(models, host, REPO, TAG)
    assert _pull(name, models, "--progress", "plain") == 0
    assert f"checking {len(model.blobs)} blob(s) in the store not hashed here yet" in capsys.readouterr().err
    assert _pull(name, models, "--progress", "plain") == 0
    assert "checking" not in capsys.readouterr().err


def test_verify_of_a_model_that_is_not_there_is_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    make_model(size_bytes=1000).expected_store(models, "registry.ollama.ai", REPO, TAG)
    assert main(["verify", "--models-dir", str(models), "nothere:1"]) == 3  # was 5, as if it were corrupt
    err = capsys.readouterr().err
    assert "nothere:1" in err and "ollama-seed list" in err


def test_without_a_registry_importing_a_bundle_repairs_what_verify_found(
    served: tuple[str, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The air-gapped repair: verify marks the damaged blob, and an import replaces exactly that one
    (an import otherwise keeps any blob of the right size, as Ollama does)."""
    name, model = served
    good, bad = tmp_path / "good", tmp_path / "bad"
    assert _pull(name, good) == 0 and _pull(name, bad) == 0
    bundle = tmp_path / "m.tar"
    assert main(["export", name, "--models-dir", str(good), "-o", str(bundle), "--progress", "none"]) == 0
    blob = bad / "blobs" / f"sha256-{model.model_layer.hex}"
    _flip(blob)
    assert main(["verify", "--models-dir", str(bad)]) == 5
    assert "import a bundle" in capsys.readouterr().err
    assert main(["import", str(bundle), "--models-dir", str(bad), "--progress", "none"]) == 0
    assert main(["verify", "--models-dir", str(bad)]) == 0
    assert blob.read_bytes() == model.model_layer.read_bytes()
