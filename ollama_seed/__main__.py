"""``python -m ollama_seed``."""

from .cli.main import entry

entry()
