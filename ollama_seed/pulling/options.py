"""The options every pull takes, declared once, with their defaults and their one check.

:class:`PullOptions` is what callers pass: ``apull``, ``apull_all``, ``aensure``, ``acreate``
(for a FROM model it pulls) and their blocking twins take it as keywords
(``pull("gemma3:270m", connections=4)``), the mirror's pull-through cache and
:class:`~.session.PullSession` take it, the CLI builds one from its flags (``cli/options``)
and the config file from its keys (``startup/config``). :class:`PullSettings` is the same with
every default filled in and every value checked; :meth:`PullSettings.of` is the one place
that checks them. Cheap to import: no httpx, no anyio (``ensure()``'s fast path checks its
options here too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from ..core.bounds import check
from ..core.errors import ConfigError

if TYPE_CHECKING:
    import httpx

    from ..core.progress import ProgressCallback
    from ..wire.registry import Credentials
    from ..wire.verify import TrustLike

__all__ = ["PULL_KEYS", "PullOptions", "PullSettings"]


class PullOptions(TypedDict, total=False):
    """The keyword options of every pull (each optional; the defaults are :class:`PullSettings`'s).

    Attributes:
        insecure: plain http for the registry (as ``ollama pull --insecure``).
        connections: concurrent range requests per blob, 1 to 256 (default 16).
        max_connections: concurrent requests across all blobs, 1 to 4096 (default 64).
        max_rate: bandwidth cap in bytes/s, or a string such as ``"50M"`` or ``"400Mbit"``
            (default None: no cap).
        stall_timeout: seconds without a byte before a request is retried, more than 0 and at
            most 86400 (default 30).
        mirrors: registries to try first, in order (``http://mirror:8080``); then the name's own
            registry. A mirror that fails or serves a blob with the wrong digest is skipped for
            that blob.
        credentials: ``host -> (user, password)`` for registries that ask (default: the
            environment, then ``~/.docker/config.json``).
        use_locks: lock blobs between processes (saves bandwidth; correctness does not need it;
            default True).
        progress: called with :class:`~ollama_seed.Status` and :class:`~ollama_seed.LayerProgress`
            events.
        transport: an httpx transport for registry traffic (tests, custom networking).
        trust: a :class:`~ollama_seed.Trust` (the manifest must carry a cosign signature by one of
            its keys or CAs) or a :class:`~ollama_seed.TrustPolicy` (per name pattern: enforce, warn
            or off); checked before any blob is fetched, the signer is in the result (default None:
            no signature asked). ``ensure`` also checks a model already on disk, against the
            signatures the store keeps.
    """

    insecure: bool
    connections: int
    max_connections: int
    max_rate: float | str | None
    stall_timeout: float
    mirrors: Sequence[str]
    credentials: Credentials | None
    use_locks: bool
    progress: ProgressCallback | None
    transport: httpx.AsyncBaseTransport | None
    trust: TrustLike


PULL_KEYS = PullOptions.__optional_keys__


@dataclass(frozen=True, slots=True)
class PullSettings:
    """:class:`PullOptions` with every default filled in (here, and nowhere else) and every value checked."""

    insecure: bool = False
    connections: int = 16
    max_connections: int = 64
    max_rate: float | None = None
    stall_timeout: float = 30.0
    mirrors: tuple[str, ...] = ()
    credentials: Credentials | None = None
    use_locks: bool = True
    progress: ProgressCallback | None = None
    transport: httpx.AsyncBaseTransport | None = None
    trust: TrustLike = None

    @classmethod
    def of(cls, options: Mapping[str, Any], *, caller: str = "pull") -> PullSettings:
        """Check *options* (a :class:`PullOptions`) and fill in the defaults.

        Raises:
            TypeError: a key that is not a pull option, as a misspelt keyword argument would.
            ConfigError: a value out of range (exit 2), naming the option and its range.
        """
        unknown = sorted(set(options) - PULL_KEYS)
        if unknown:
            raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
        values = dict(options)
        for key in ("connections", "max_connections", "stall_timeout"):
            if key in values:
                check(key, values[key])
        rate = values.get("max_rate")
        if isinstance(rate, str):
            from ..core.units import parse_rate

            try:
                rate = parse_rate(rate)
            except ValueError as exc:
                raise ConfigError(f"max_rate: {exc}") from None
        values["max_rate"] = None if rate is None else float(check("max_rate", rate))
        if "mirrors" in values:
            mirrors = values["mirrors"]
            values["mirrors"] = (mirrors,) if isinstance(mirrors, str) else tuple(mirrors)
        return cls(**values)

    def options(self) -> PullOptions:
        """These settings as keywords for another pull (every key given)."""
        return PullOptions(
            insecure=self.insecure,
            connections=self.connections,
            max_connections=self.max_connections,
            max_rate=self.max_rate,
            stall_timeout=self.stall_timeout,
            mirrors=self.mirrors,
            credentials=self.credentials,
            use_locks=self.use_locks,
            progress=self.progress,
            transport=self.transport,
            trust=self.trust,
        )
