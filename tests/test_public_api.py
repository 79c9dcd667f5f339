"""The public API: complete, sorted, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ollama_seed


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert list(ollama_seed.__all__) == sorted(ollama_seed.__all__)
    for name in ollama_seed.__all__:
        assert getattr(ollama_seed, name) is not None, name
    assert set(dir(ollama_seed)) >= set(ollama_seed.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        ollama_seed.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_import_and_ensure_of_a_complete_model_load_no_network_stack() -> None:
    """`import ollama_seed` and the cheap ensure path import neither httpx nor anyio."""
    code = ("import sys, ollama_seed; ollama_seed.ensure; ollama_seed.ModelStore; "
            "print(sorted(m for m in ('httpx', 'anyio', 'rich', 'uvicorn', 'zstandard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
