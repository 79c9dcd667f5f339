"""``python -m ollama_seed``."""

from ._cli import main

raise SystemExit(main())
