"""``PARAMETER`` values: typed as Ollama's client types them, and held as its server holds them.

The client checks each name against the JSON tags of Ollama's ``Options``/``Runner`` structs and parses
the value by the field's type (``api.FormatParams``); the request then crosses HTTP as JSON and the
server decodes it into ``map[string]any``, so every number becomes a float64 before the params blob is
encoded. :func:`parse_parameter` is the first step, :func:`wire_value` the second.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TypeAlias

from .gofloat import format_json_float, parse_float32
from .gojson import GoValue

__all__ = [
    "BOOL_PARAMETERS",
    "DEPRECATED_PARAMETERS",
    "FLOAT_PARAMETERS",
    "INT_PARAMETERS",
    "LIST_PARAMETERS",
    "ParameterError",
    "ParameterValue",
    "parse_parameter",
    "wire_parameters",
    "wire_value",
]

# Ollama v0.7.0 to v0.33.0-rc2 (draft_num_predict: the latest only)
INT_PARAMETERS = frozenset(
    {
        "num_ctx",
        "num_batch",
        "num_gpu",
        "num_thread",
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "repeat_last_n",
        "draft_num_predict",
        "main_gpu",
    }
)
FLOAT_PARAMETERS = frozenset(
    {"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty"}
)
BOOL_PARAMETERS = frozenset({"use_mmap"})
LIST_PARAMETERS = frozenset({"stop"})
# Dropped with "warning: parameter NAME is deprecated" (v0.7.0+; before that only penalize_newline was)
DEPRECATED_PARAMETERS = (
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
)

ParameterValue: TypeAlias = "int | float | bool | str | tuple[str, ...]"
"""int; float (already rounded to float32); bool; a ``stop`` string (one per PARAMETER line), or the
``stop`` list once lines are merged."""

_INT = re.compile(r"[+-]?[0-9]+")
_BOOLS = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


class ParameterError(ValueError):
    """A parameter Ollama refuses. ``ollama_message`` is Ollama's exact text; ``str()`` adds what to do."""

    def __init__(self, ollama_message: str, hint: str) -> None:
        super().__init__(f"{ollama_message}: {hint}")
        self.ollama_message = ollama_message


def parse_parameter(name: str, value: str) -> ParameterValue:
    """Type one ``PARAMETER name value`` as Ollama's client does.

    Raises:
        ParameterError: ``unknown parameter 'x'``, ``invalid int value [x]``, ``invalid float value [x]``,
            ``invalid bool value [x]``; or a NaN/infinite float, which Ollama's client parses and then
            cannot send (``json: unsupported value: NaN``).
    """
    if name in INT_PARAMETERS:
        if _INT.fullmatch(value) and -(1 << 63) <= int(value) < (1 << 63):
            return int(value)
        raise ParameterError(f"invalid int value [{value}]", f"{name} takes a whole number, such as 4096")
    if name in FLOAT_PARAMETERS:
        try:
            number = parse_float32(value)
        except (ValueError, OverflowError):
            raise ParameterError(
                f"invalid float value [{value}]", f"{name} takes a number, such as 0.7 (at most about 3.4e38)"
            ) from None
        if math.isnan(number) or math.isinf(number):
            text = "NaN" if math.isnan(number) else ("-Inf" if number < 0 else "+Inf")
            raise ParameterError(f"json: unsupported value: {text}", f"{name} must be a finite number")
        return number
    if name in BOOL_PARAMETERS:
        if value in _BOOLS:
            return _BOOLS[value]
        raise ParameterError(f"invalid bool value [{value}]", f"{name} takes true or false")
    if name in LIST_PARAMETERS:
        return value
    known = ", ".join(sorted(INT_PARAMETERS | FLOAT_PARAMETERS | BOOL_PARAMETERS | LIST_PARAMETERS))
    raise ParameterError(
        f"unknown parameter '{name}'", f"parameter names are case-sensitive and must be one of {known}"
    )


def wire_value(value: ParameterValue) -> GoValue:
    """A typed value as Ollama's server holds it after the JSON round trip (what the params blob encodes).

    Numbers become float64: an int exactly as Go converts it, a float32 through its shortest float32
    decimal (``0.123456789`` was rounded to float32 and is sent as ``0.12345679``).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return float(format_json_float(value, 32))
    if isinstance(value, str):
        return [value]
    return list(value)


def wire_parameters(params: Mapping[str, ParameterValue]) -> dict[str, GoValue]:
    """:func:`wire_value` over a whole merged parameter map."""
    return {name: wire_value(value) for name, value in params.items()}
