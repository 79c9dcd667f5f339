"""What an OMS statement's resources name: a manifest path is read as the store reads it."""

from __future__ import annotations

from pathlib import Path

from ollama_seed.core.coverage import SignedModels
from ollama_seed.core.digest import Digest
from ollama_seed.core.intoto import OmsManifest
from ollama_seed.core.layout import ModelsLayout

HEX = "ab" * 32


def test_resources_sort_into_manifests_blobs_and_other_files() -> None:
    paths = [
        "manifests/registry.ollama.ai/library/gemma3/270m",
        "manifests/registry.lan:5000/ns/model/local",  # a tag ':local' would drop in a name as typed
        "manifests/registry.ollama.ai/library/x/../y",
        f"blobs/sha256-{HEX}",
        "README.md",
    ]
    resources = dict.fromkeys(paths, HEX)
    signed = SignedModels.from_oms(OmsManifest("models", "0" * 64, resources, ()))
    layout = ModelsLayout(Path("/m"))
    expected = {layout.name_for_manifest_path(Path("/m", p)) for p in paths[:2]}
    assert set(signed.manifests) == expected and None not in expected
    assert [str(n) for n in signed.names()] == [
        "registry.lan:5000/ns/model:local",
        "registry.ollama.ai/library/gemma3:270m",
    ]
    assert signed.blobs == frozenset({Digest(HEX)})
    assert signed.others == ("manifests/registry.ollama.ai/library/x/../y", "README.md")
