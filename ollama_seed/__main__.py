"""``python -m ollama_seed``."""

from ._cli import entry

entry()
