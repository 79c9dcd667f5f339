"""The exceptions ollama_seed raises on purpose.

Every error that reaches a caller is one of these, never an httpx, anyio or
ExceptionGroup error::

    SeedError                               root; .exit_code is what the CLI exits with
    ├── InvalidName (ValueError)            a model name that Ollama would refuse      exit 2
    ├── ConfigError (ValueError)            a bad config file, option or OLLAMA_HOST   exit 2
    ├── InvalidModelfile (ValueError)       a Modelfile, or a file it names, create cannot use  exit 2
    ├── RegistryError                       the registry said no or misbehaved          exit 4
    │   ├── ModelNotFound (LookupError)     404 on the manifest                         exit 3
    │   ├── AuthenticationError             401/403 that a token did not cure           exit 7
    │   └── RegistryProtocolError           bad manifest, bad Content-Range, ...        exit 4
    ├── TransferError                       the network failed after every retry        exit 4
    ├── IntegrityError                      sha256 or size mismatch                     exit 5
    ├── InsufficientSpace (OSError)         the layers do not fit, or ENOSPC            exit 6
    ├── StoreError (OSError)                the local store is unusable                 exit 8
    ├── OfflineError (LookupError)          offline and something is missing           exit 10
    ├── ServerError                         an Ollama server did not answer or refused  exit 11
    ├── SeedTimeout (TimeoutError)          an overall deadline passed                  exit 9
    ├── BundleError                         an unreadable or hostile bundle             exit 12
    ├── SignatureError                      unsigned, tampered or not signed by whom you trust  exit 13
    └── SigningKeyError (ValueError)        a key, certificate or passphrase that cannot be used  exit 14

Messages name the problem and what to do next.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BundleError",
    "ConfigError",
    "IntegrityError",
    "InsufficientSpace",
    "InvalidModelfile",
    "InvalidName",
    "ModelNotFound",
    "OfflineError",
    "RegistryError",
    "RegistryProtocolError",
    "SeedError",
    "SeedTimeout",
    "ServerError",
    "SignatureError",
    "SigningKeyError",
    "StoreError",
    "TransferError",
]


class SeedError(Exception):
    """Root of every error ollama_seed raises on purpose."""

    exit_code: int = 1


class InvalidName(SeedError, ValueError):
    """A model name, tag or digest that does not follow Ollama's rules."""

    exit_code = 2


class ConfigError(SeedError, ValueError):
    """A config file, option or address (``OLLAMA_HOST``) that cannot be used as written."""

    exit_code = 2


class InvalidModelfile(SeedError, ValueError):
    """A Modelfile that does not parse, or a file it names that is not a usable GGUF."""

    exit_code = 2


class RegistryError(SeedError):
    """The registry refused a request or answered something we cannot use."""

    exit_code = 4

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ModelNotFound(RegistryError, LookupError):
    """The registry has no manifest for this name (HTTP 404)."""

    exit_code = 3


class AuthenticationError(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""

    exit_code = 7


class RegistryProtocolError(RegistryError):
    """The registry answered in a way the protocol does not allow (bad manifest, bad range, ...)."""


class TransferError(SeedError):
    """The network failed and every retry was used up."""

    exit_code = 4


class IntegrityError(SeedError):
    """Downloaded or stored bytes do not match their digest or size."""

    exit_code = 5

    def __init__(self, message: str, *, expected: str | None = None, actual: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class InsufficientSpace(SeedError, OSError):
    """The missing layers do not fit on the disk that holds the models directory."""

    exit_code = 6

    def __init__(self, message: str, *, needed: int | None = None, free: int | None = None) -> None:
        super().__init__(message)
        self.needed = needed
        self.free = free


class StoreError(SeedError, OSError):
    """The local models directory is unusable: a corrupt manifest, a symlink, a permission problem."""

    exit_code = 8


class SeedTimeout(SeedError, TimeoutError):
    """An overall deadline passed before the work was done."""

    exit_code = 9


class OfflineError(SeedError, LookupError):
    """Offline mode is on and something needed is not on disk."""

    exit_code = 10


class ServerError(SeedError):
    """An Ollama server did not become ready, or refused a request."""

    exit_code = 11


class BundleError(SeedError):
    """A bundle is unreadable, of an unknown version, truncated or hostile."""

    exit_code = 12


class SignatureError(SeedError):
    """A signature that is missing where trust is configured, does not verify, or is not from a key
    or certificate authority you trust; also a signed model whose content differs from what was signed."""

    exit_code = 13


class SigningKeyError(SeedError, ValueError):
    """A key, certificate or passphrase that cannot be used: a wrong passphrase, a public key given
    where the private one is needed, an unsupported curve, an expired or wrongly-used certificate."""

    exit_code = 14
