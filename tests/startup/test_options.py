"""ensure's keywords, declared twice on purpose (aensure's signature, and ENSURE_KEYS for the cheap path
that must not import aensure's module): the two agree, and every other keyword is a pull option."""

from __future__ import annotations

import inspect

from ollama_seed.pulling.options import PULL_KEYS, PullSettings
from ollama_seed.startup.api import aensure
from ollama_seed.startup.options import ENSURE_KEYS


def test_the_cheap_path_knows_exactly_aensures_keywords() -> None:
    params = inspect.signature(aensure).parameters
    own = {name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"models_dir"}
    assert own == ENSURE_KEYS
    assert params["options"].kind is inspect.Parameter.VAR_KEYWORD  # the rest: PullOptions
    assert not ENSURE_KEYS & PULL_KEYS


def test_pull_settings_hold_every_pull_option_and_its_default() -> None:
    fields = set(PullSettings.__dataclass_fields__)
    assert fields == set(PULL_KEYS)
    settings = PullSettings.of({})
    assert (settings.connections, settings.max_connections, settings.stall_timeout) == (16, 64, 30.0)
    assert settings.options().keys() == PULL_KEYS
