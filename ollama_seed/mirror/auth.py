"""Who may read from the mirror: htpasswd users, static bearer tokens, per-repository rules.

- ``--htpasswd FILE``: the file Docker Distribution's ``htpasswd`` auth and nginx read, one
  ``user:hash`` a line, ``#`` comments. Only bcrypt hashes (``$2y$``, ``$2b$``, ``$2a$``, as
  ``htpasswd -B`` writes them) are accepted, as in Distribution; a line with another scheme is
  reported once at load and that user cannot log in. The file is read again when it changes.
- ``--token-file FILE``: ``user:token`` a line; the token may be written as ``sha256:<hex>`` of
  the token so the file holds no secret. Clients send ``Authorization: Bearer <token>``.
- ``--access FILE`` (TOML): which repositories each user may read, as glob patterns matched
  case-insensitively against the repository as requested (``library/gpt-oss``, or
  ``hf.co/user/repo`` with its host)::

      [read]
      alice = ["library/*", "team-a/*"]
      ci = ["*"]
      "*" = ["library/*"]        # every other user

  A repository a user may not read answers 404, exactly as one that does not exist.

bcrypt is slow on purpose (tens of milliseconds a check); a client sends its credentials with
every request, so a header that verified once is remembered (as a keyed hash, never the header)
until the htpasswd file changes, and a remembered header is never rate-limited: other people's
failures cannot lock out a client that is logged in. Checks run on a pool of their own (two
threads), so a flood of logins cannot hold up the threads that read the store.

Failed logins are counted per client address and user name (``limit`` in ``window`` seconds), per
address (5 x ``limit``: one address trying many users) and per user name (5 x ``limit``: many
addresses trying one user). An attempt is counted *before* its password is checked, so parallel
attempts cannot slip past the limit (requests carrying the same credentials at once share one
check); past it, the attempt is answered 429 without a check until
the window has passed. One user's mistakes behind a shared address (a NAT, a reverse proxy) do not
lock out the other users behind it.
"""

from __future__ import annotations

import base64
import binascii
import collections
import fnmatch
import hashlib
import hmac
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from ..core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["AccessRules", "Authenticator", "FailureLimiter", "Htpasswd", "Principal", "Refused", "StaticTokens"]

log = logging.getLogger("ollama_seed.mirror.auth")
_BCRYPT_PREFIXES = (b"$2y$", b"$2b$", b"$2a$")
_REMEMBER = 4096  # verified Authorization headers kept (as keyed hashes)


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a login was refused: ``missing``, ``malformed``, ``unknown-user``, ``bad-password``,
    ``bad-token`` or ``rate-limited`` (then *retry_after* seconds); the user name it claimed, if any."""

    reason: str
    user: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated reader: the user name and how it logged in (``basic`` or ``bearer``)."""

    user: str
    scheme: str


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc}") from None
    return [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class Htpasswd:
    """An htpasswd file of bcrypt entries, read again when it changes (checked at most once a second).

    Raises:
        ConfigError: the file cannot be read, or has no usable entry.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self.generation = 0
        self._entries: dict[str, bytes] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._load(initial=True)

    def _load(self, *, initial: bool) -> None:
        stamp = _stamp(self.path)
        entries: dict[str, bytes] = {}
        for number, line in _read_lines(self.path, "htpasswd file"):
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                log.warning("%s line %d: not user:hash; skipped", self.path, number)
                continue
            raw = hashed.strip().encode("ascii", "replace")
            if not raw.startswith(_BCRYPT_PREFIXES):
                log.warning(
                    "%s line %d: user %r has no bcrypt hash (only bcrypt is accepted, as in Docker "
                    "Distribution; create it with 'htpasswd -B'); this user cannot log in",
                    self.path,
                    number,
                    user,
                )
                continue
            entries[user] = raw
        if initial and not entries:
            raise ConfigError(
                f"the htpasswd file {self.path} has no bcrypt entry; create one with 'htpasswd -B -c {self.path} USER'"
            )
        self._entries, self._stamp = entries, stamp
        self.generation += 1

    def refresh(self) -> None:
        """Read the file again if it changed (at most once a second); a broken new version keeps the old."""
        now = self._clock()
        if now - self._checked < 1.0:
            return
        self._checked = now
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return
        try:
            self._load(initial=False)
            log.info("read %s again: %d user(s)", self.path, len(self._entries))
        except ConfigError as exc:
            log.warning("%s changed but cannot be read (%s); keeping the users read before", self.path, exc)

    def hash_of(self, user: str) -> bytes | None:
        return self._entries.get(user)

    def sample(self) -> bytes | None:
        """One of the hashes (its cost is what a check of an unknown user should cost)."""
        return next(iter(self._entries.values()), None)

    def __len__(self) -> int:
        return len(self._entries)


class StaticTokens:
    """``user:token`` lines; a token written ``sha256:<hex>`` is compared by its hash.

    Raises:
        ConfigError: unreadable, or a line is not ``user:token``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._by_hash: dict[bytes, str] = {}
        for number, line in _read_lines(self.path, "token file"):
            user, sep, token = line.partition(":")
            token = token.strip()
            if not sep or not user or not token:
                raise ConfigError(
                    f"{self.path} line {number}: write each token as USER:TOKEN (or USER:sha256:<hex of the token>)"
                )
            if token.startswith("sha256:"):
                try:
                    digest = bytes.fromhex(token[7:])
                except ValueError:
                    digest = b""
                if len(digest) != 32:
                    raise ConfigError(f"{self.path} line {number}: sha256: must be followed by 64 hex digits")
            else:
                digest = hashlib.sha256(token.encode()).digest()
            self._by_hash[digest] = user.strip()

    def user_for(self, token: str) -> str | None:
        want = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for digest, user in self._by_hash.items():  # compare every entry: the time says nothing
            if hmac.compare_digest(digest, want):
                found = user
        return found


class AccessRules:
    """Which repositories each user may read (see the module docstring).

    Raises:
        ConfigError: the file is unreadable, not TOML, or not ``[read] user = ["pattern", ...]``.
    """

    def __init__(self, rules: Mapping[str, Iterable[str]]) -> None:
        self._rules = {user: tuple(p.lower() for p in patterns) for user, patterns in rules.items()}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AccessRules:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the access file {path}: {exc}") from None
        read = doc.get("read")
        unknown = set(doc) - {"read"}
        if (
            not isinstance(read, dict)
            or unknown
            or not all(isinstance(v, list) and all(isinstance(p, str) and p for p in v) for v in read.values())
        ):
            raise ConfigError(
                f'{path}: write the access rules as a [read] table of user = ["pattern", ...], '
                'e.g. [read]\\nalice = ["library/*"]'
            )
        return cls(read)

    def patterns(self, user: str) -> tuple[str, ...]:
        return self._rules.get(user, self._rules.get("*", ()))

    def allows(self, user: str, names: Iterable[str]) -> bool:
        """True if *user* may read a repository known by any of *names* (``ns/model``, ``host/ns/model``)."""
        patterns = self.patterns(user)
        return any(fnmatch.fnmatchcase(name.lower(), p) for name in names for p in patterns)


class FailureLimiter:
    """Failed logins per key (an address, a user, a pair); past *limit* in *window* seconds the key waits.

    An attempt in progress (:meth:`begin`) counts as a failure until it ends (:meth:`succeeded` or
    :meth:`failed`), so parallel attempts cannot all pass the check before the first fails.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.limit, self.window, self._clock, self._max = limit, window, clock, max_addresses
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._pending: collections.Counter[str] = collections.Counter()

    def _recent(self, address: str) -> collections.deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        cutoff = self._clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str, limit: int | None = None) -> float | None:
        """Seconds *address* (any key) must wait before its next login is checked; None if it may try now."""
        limit = limit or self.limit
        times = self._recent(address)
        held = (len(times) if times is not None else 0) + self._pending[address]
        if held < limit:
            return None
        if times is None or len(times) < limit:
            return 1.0  # attempts in progress hold the rest: try again in a moment
        return max(1.0, times[-limit] + self.window - self._clock())

    def begin(self, keys: Iterable[str]) -> None:
        """An attempt for *keys* is being checked: it counts until :meth:`succeeded` or :meth:`failed`."""
        self._pending.update(keys)

    def succeeded(self, keys: Iterable[str]) -> None:
        self._pending.subtract(keys)
        self._pending = +self._pending

    def failed(self, address: str, *, pending: bool = False, limit: int | None = None) -> None:
        if pending:
            self.succeeded([address])
        times = self._recent(address)
        if times is None:
            times = self._failures[address] = collections.deque(maxlen=max(limit or self.limit, self.limit))
        times.append(self._clock())
        self._failures.move_to_end(address)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)


class Authenticator:
    """Checks a request's ``Authorization`` against the htpasswd file and the token file.

    Args:
        htpasswd: users with bcrypt passwords (HTTP Basic).
        tokens: static bearer tokens.
        access: per-user repository rules; None lets every user read everything.
        realm: sent in ``WWW-Authenticate: Basic realm="..."``.
        limiter: failed logins per client address.
    """

    def __init__(
        self,
        htpasswd: Htpasswd | None = None,
        tokens: StaticTokens | None = None,
        *,
        access: AccessRules | None = None,
        realm: str = "ollama-seed",
        limiter: FailureLimiter | None = None,
    ) -> None:
        if htpasswd is None and tokens is None:
            raise ConfigError("authentication needs --htpasswd or --token-file")
        self.htpasswd, self.tokens, self.access = htpasswd, tokens, access
        self.realm = realm
        self.limiter = limiter or FailureLimiter()
        self._key = secrets.token_bytes(32)
        self._verified: collections.OrderedDict[bytes, tuple[str, int]] = collections.OrderedDict()
        self._dummy: bytes | None = None
        self._bcrypt = anyio.CapacityLimiter(2)
        self._checking: dict[bytes, tuple[anyio.Event, list[Principal | Refused | str]]] = {}

    @property
    def challenge(self) -> bytes:
        return f'Basic realm="{self.realm}"'.encode()

    def _remembered(self, header: bytes) -> tuple[bytes, str | None]:
        key = hmac.new(self._key, header, hashlib.sha256).digest()
        generation = self.htpasswd.generation if self.htpasswd is not None else 0
        hit = self._verified.get(key)
        if hit is not None and hit[1] == generation:
            self._verified.move_to_end(key)
            return key, hit[0]
        return key, None

    def _keys(self, address: str, user: str) -> list[tuple[str, int]]:
        wide = self.limiter.limit * 5
        return [(f"pair {address} {user}", self.limiter.limit), (f"addr {address}", wide), (f"user {user}", wide)]

    async def authenticate(self, header: bytes | None, address: str = "unknown") -> Principal | Refused:
        """The principal for an ``Authorization`` value, else why not (see :class:`Refused`)."""
        if not header:
            return Refused("missing")
        result = await self._authenticate(header, address)
        return Refused(result) if isinstance(result, str) else result

    async def _authenticate(self, header: bytes, address: str) -> Principal | Refused | str:
        scheme, _, value = header.strip().partition(b" ")
        scheme = scheme.lower()
        if scheme == b"bearer" and self.tokens is not None:
            where, wide = f"addr {address}", self.limiter.limit * 5
            wait = self.limiter.retry_after(where, wide)
            if wait is not None:
                return Refused("rate-limited", None, wait)
            user = self.tokens.user_for(value.strip().decode("latin-1"))
            if user is None:
                self.limiter.failed(where, limit=wide)
                return "bad-token"
            return Principal(user, "bearer")
        if scheme != b"basic" or self.htpasswd is None:
            return "malformed"
        self.htpasswd.refresh()
        key, user = self._remembered(header.strip())
        if user is not None:
            return Principal(user, "basic")
        shared = self._checking.get(key)
        if shared is not None:  # the same credentials are being checked: share that check
            await shared[0].wait()
            return shared[1][0] if shared[1] else "malformed"
        entry: tuple[anyio.Event, list[Principal | Refused | str]] = (anyio.Event(), [])
        self._checking[key] = entry
        try:
            result = await self._check_basic(key, value, address)
            entry[1].append(result)
            return result
        finally:
            del self._checking[key]
            entry[0].set()

    async def _check_basic(self, key: bytes, value: bytes, address: str) -> Principal | Refused | str:
        assert self.htpasswd is not None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError):
            return "malformed"
        user, sep, password = decoded.partition(":")
        if not sep:
            return "malformed"
        keys = self._keys(address, user[:256])
        waits = [w for k, limit in keys if (w := self.limiter.retry_after(k, limit)) is not None]
        if waits:
            return Refused("rate-limited", user, max(waits))
        names = [k for k, _ in keys]
        self.limiter.begin(names)
        try:
            hashed = self.htpasswd.hash_of(user)
            ok = await anyio.to_thread.run_sync(
                lambda: _checkpw(password.encode(), hashed or self._dummy_hash()), limiter=self._bcrypt
            )
        except BaseException:
            self.limiter.succeeded(names)
            raise
        if hashed is None or not ok:
            for k, limit in keys:
                self.limiter.failed(k, pending=True, limit=limit)
            return Refused("unknown-user" if hashed is None else "bad-password", user)
        self.limiter.succeeded(names)
        self._verified[key] = (user, self.htpasswd.generation)
        while len(self._verified) > _REMEMBER:
            self._verified.popitem(last=False)
        return Principal(user, "basic")

    def _dummy_hash(self) -> bytes:
        """A hash to check unknown users against, so a response's timing does not tell which users exist."""
        if self._dummy is None:
            import bcrypt

            some = self.htpasswd.sample() if self.htpasswd is not None else None
            rounds = int(some[4:6]) if some is not None and some[4:6].isdigit() else 10
            self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(max(4, min(rounds, 16))))
        return self._dummy


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a password over bcrypt's 72 bytes, or a damaged hash
        return False
