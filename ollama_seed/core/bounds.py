"""The allowed range of every numeric option, and the one check that enforces it. Pure.

The CLI, the config file and the Python API check a value here, so ``--connections 0``,
``connections = 0`` in config.toml and ``pull(..., connections=0)`` fail alike: before any work,
with a :class:`~.errors.ConfigError` (exit 2) that names the option and its range. A new numeric
option gets its row in :data:`BOUNDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["BOUNDS", "Bound", "check"]


@dataclass(frozen=True, slots=True)
class Bound:
    """*low* to *high* (None: no upper limit); *whole*: an integer; *above*: *low* itself is not allowed."""

    low: float
    high: float | None = None
    whole: bool = False
    above: bool = False
    unit: str = ""

    def describe(self) -> str:
        """``a whole number from 1 to 256``, ``a number of seconds more than 0 and at most 86400``."""
        what = "a whole number" if self.whole else "a number"
        what += f" of {self.unit}" if self.unit else ""
        low = _shown(self.low)
        if self.high is None:
            return f"{what} {'more than' if self.above else 'at least'} {low}"
        if self.above:
            return f"{what} more than {low} and at most {_shown(self.high)}"
        return f"{what} from {low} to {_shown(self.high)}"

    def allows(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.whole and not isinstance(value, int):
            return False
        if value != value or value < self.low or (self.above and value == self.low):  # NaN fails too
            return False
        return self.high is None or value <= self.high


BOUNDS: dict[str, Bound] = {
    # pulls (pulling.options.PullOptions)
    "connections": Bound(1, 256, whole=True),
    "max_connections": Bound(1, 4096, whole=True),
    "stall_timeout": Bound(0, 86400, above=True, unit="seconds"),
    "max_rate": Bound(0, above=True, unit="bytes/s"),
    # ensure
    "timeout": Bound(0, unit="seconds"),
    "wait_timeout": Bound(0, unit="seconds"),
    # serve (the mirror's own options; its upstream pulls take connections and stall_timeout above)
    "port": Bound(0, 65535, whole=True),  # 0: a free port the system picks
    "limit_concurrency": Bound(1, whole=True),
    "max_header_size": Bound(1024, whole=True, unit="bytes"),
    "header_timeout": Bound(0, above=True, unit="seconds"),
    "keep_alive": Bound(0, above=True, unit="seconds"),
    "write_timeout": Bound(0, above=True, unit="seconds"),
    "shutdown_timeout": Bound(0, above=True, unit="seconds"),
    "max_cache_size": Bound(1, whole=True, unit="bytes"),
    # push
    "concurrency": Bound(1, 64, whole=True),
}


def check(key: str, value: Any, *, name: str | None = None) -> Any:
    """*value*, when it lies in the range :data:`BOUNDS` gives *key*.

    Args:
        name: how the caller spells the option (``--max-connections``); default *key*.

    Raises:
        ConfigError: out of range or not a number; the message names the option and its range.
    """
    bound = BOUNDS[key]
    if not bound.allows(value):
        raise ConfigError(f"{name or key} must be {bound.describe()}, not {value!r}")
    return value


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)
