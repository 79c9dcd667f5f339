"""What a model file or folder is, when it is not a GGUF: so the message can say what to do instead.

``ollama create`` itself converts safetensors and PyTorch checkpoints (it runs its own converter); we
write GGUFs only. These helpers look at bytes and names the caller hands over (no file is opened here)
and name the format, with the two ways forward: convert to GGUF with llama.cpp, or let a running Ollama
create the model.
"""

from __future__ import annotations

import fnmatch
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CONVERT_HINT",
    "SNIFF_BYTES",
    "ModelFiles",
    "classify_directory",
    "describe_non_gguf",
    "sniff",
]

SNIFF_BYTES = 16  # enough for every magic below
CONVERT_HINT = (
    "convert it to GGUF with llama.cpp's convert_hf_to_gguf.py (then FROM the .gguf), or create the "
    "model with a running Ollama (`ollama create`), which converts it itself"
)

_LEGACY_GGML = {b"lmgg": "ggml", b"fmgg": "ggmf", b"tjgg": "ggjt", b"algg": "ggla"}


def sniff(head: bytes) -> str:
    """The format the first bytes of a file say it has.

    One of ``gguf``, ``gguf-big-endian``, ``ggml-legacy``, ``safetensors``, ``pytorch-zip``,
    ``pytorch-pickle``, ``numpy``, ``empty``, ``unknown``. Give at least :data:`SNIFF_BYTES` bytes.
    """
    if not head:
        return "empty"
    if head[:4] == b"GGUF":
        if len(head) >= 8 and head[4:6] == b"\0\0" and head[6:8] != b"\0\0":
            return "gguf-big-endian"
        return "gguf"
    if head[:4] == b"FUGG":
        return "gguf-big-endian"
    if head[:4] in _LEGACY_GGML:
        return "ggml-legacy"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "pytorch-zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pytorch-pickle"
    if head[:6] == b"\x93NUMPY":
        return "numpy"
    return "unknown"


def describe_non_gguf(head: bytes) -> str:
    """A message for a file that is not a (little-endian) GGUF, naming what it is and what to do."""
    kind = sniff(head)
    if kind == "safetensors":
        return f"not a GGUF file but safetensors weights; {CONVERT_HINT}"
    if kind in ("pytorch-zip", "pytorch-pickle"):
        return f"not a GGUF file but a PyTorch checkpoint (or another zip/pickle file); {CONVERT_HINT}"
    if kind == "ggml-legacy":
        return (
            "not a GGUF file but a legacy GGML file (from before August 2023), which Ollama refuses too "
            "(supplied file was not in GGUF format); convert the original weights again with a current "
            "llama.cpp"
        )
    if kind == "numpy":
        return f"not a GGUF file but a NumPy array file; {CONVERT_HINT}"
    if kind == "empty":
        return "not a GGUF file: it is empty"
    if kind == "gguf-big-endian":
        return "a big-endian GGUF: Ollama loads little-endian GGUFs only; convert it with gguf-convert-endian first"
    shown = head[:4].hex(" ")
    return (
        f"supplied file was not in GGUF format (it starts with bytes {shown}, not 'GGUF'); FROM takes a GGUF "
        f"file, a folder of GGUF files, or a model name; for safetensors or PyTorch weights, {CONVERT_HINT}"
    )


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """The model files in a folder, chosen as Ollama's client chooses them (``filesForModel``).

    ``kind`` is ``safetensors``, ``pytorch``, ``gguf``, ``bin`` or ``none``; ``files`` are the matching
    relative paths, sorted.
    """

    kind: str
    files: tuple[str, ...]

    def problem(self, folder: str) -> str | None:
        """Why we cannot create from this folder (None for GGUFs), as a message that says what to do."""
        if self.kind == "gguf":
            return None
        if self.kind == "none":
            return (
                f"{folder}: no Modelfile or safetensors files found (no *.safetensors, *.bin, *.pth or *.gguf "
                "model files in the folder); FROM a .gguf file or a folder that holds one"
            )
        if self.kind == "bin":
            return (
                f"{folder}: the model files are *.bin ({', '.join(self.files[:3])}); if they are GGUFs, name them "
                f"FROM directly, otherwise {CONVERT_HINT}"
            )
        return f"{folder}: holds {self.kind} weights ({', '.join(self.files[:3])}), not a GGUF; {CONVERT_HINT}"


# (pattern, kind), tried in Ollama's order; the first that matches decides
_GLOBS = (
    (("model*.safetensors", "*/model*.safetensors"), "safetensors"),
    (("consolidated*.safetensors",), "safetensors"),
    (("pytorch_model*.bin",), "pytorch"),
    (("consolidated*.pth",), "pytorch"),
    (("*.gguf",), "gguf"),
    (("*.bin",), "bin"),
)


def _matches(name: str, pattern: str) -> bool:
    if name.count("/") != pattern.count("/"):
        return False  # '*' never crosses a '/', as in Go's filepath.Glob
    return all(fnmatch.fnmatchcase(n, p) for n, p in zip(name.split("/"), pattern.split("/"), strict=True))


def classify_directory(names: Iterable[str]) -> ModelFiles:
    """Classify a folder from its entries: relative paths with ``/``, the top level and one level down."""
    listed = sorted(set(names))
    for patterns, kind in _GLOBS:
        found = tuple(n for n in listed if any(_matches(n, p) for p in patterns))
        if found:
            return ModelFiles(kind, found)
    return ModelFiles("none", ())
