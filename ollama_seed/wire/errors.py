"""One-line descriptions of network failures, from either path (httpx, or http.client sockets).

Here rather than in :mod:`wire.registry` so that describing a failure never imports httpx: a pull
over direct connections runs without it (see :mod:`wire.registry`). httpx's exception classes are
looked up only when httpx is already loaded, which it is whenever one of them was raised.
"""

from __future__ import annotations

import socket
import ssl
import sys

from .urls import shown_url

__all__ = ["cert_error", "describe_transport_error", "httpx_transport_errors", "permanent", "plain_http_error"]

# What OpenSSL says when the other side answers a TLS hello in plain http (1.1 and 3.0 say the first;
# later releases the others): a registry on http:// asked over https://.
_PLAIN_HTTP_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"}
)


def cert_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind *exc*, if that is what it is (retrying cannot help)."""
    cause: BaseException | None = exc
    for _ in range(32):
        if cause is None or isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def plain_http_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind *exc* when the server speaks plain http, if that is what it is."""
    cause: BaseException | None = exc
    for _ in range(32):
        if cause is None:
            return None
        if isinstance(cause, ssl.SSLError) and (getattr(cause, "reason", None) or "") in _PLAIN_HTTP_REASONS:
            return cause
        if isinstance(cause, ssl.SSLError) and "wrong version number" in str(cause):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def permanent(exc: BaseException) -> bool:
    """A failure that no retry can cure: an untrusted certificate, or plain http where TLS was asked."""
    return cert_error(exc) is not None or plain_http_error(exc) is not None


def httpx_transport_errors() -> tuple[type[BaseException], ...]:
    """httpx's transport and stream errors, for an ``except`` clause; () while httpx is not loaded
    (then nothing raised can be one of them)."""
    httpx = sys.modules.get("httpx")
    return (httpx.TransportError, httpx.StreamError) if httpx is not None else ()


def _is_httpx(exc: BaseException, name: str) -> bool:
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, getattr(httpx, name))


def describe_transport_error(exc: BaseException, url: str) -> str:
    """A one-line, actionable description of a network failure (no secrets: the URL has no query)."""
    shown = shown_url(url)
    cert = cert_error(exc)
    if cert is not None:
        return (
            f"TLS certificate of {shown} could not be verified ({cert.verify_message}); "
            "set SSL_CERT_FILE to your CA bundle, or use --insecure for a plain-http registry"
        )
    if plain_http_error(exc) is not None:
        return (
            f"{shown} answered in plain http, not TLS: a registry on plain http needs --insecure (as "
            "'ollama pull --insecure'; insecure=True in Python, [registry] insecure = true in the config file)"
        )
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or _is_httpx(exc, "ConnectError"):
        return f"cannot connect to {shown}: {exc or type(exc).__name__}; check the address, network and HTTPS_PROXY"
    if _is_httpx(exc, "TimeoutException"):
        return f"timed out talking to {shown} ({type(exc).__name__})"
    return f"network error from {shown}: {type(exc).__name__}: {exc}"
