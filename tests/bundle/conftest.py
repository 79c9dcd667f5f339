"""Fixtures the bundle tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_seed import ModelName
from ollama_seed.store.store import ModelStore
from tests.support.craft import Model, install
from tests.support.model import make_model


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding one model (``existing:1``) whose small blobs crafted bundles may share: every
    refused bundle must leave it exactly as it was."""
    root = tmp_path / "store"
    install(root, [Model(ModelName.parse("existing:1"), make_model(size_bytes=10_000, seed=900))])
    ModelStore(root).prepare()
    return root
