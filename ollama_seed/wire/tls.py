"""The TLS trust of a pull, shared by httpx and the direct path, read on the first handshake."""

from __future__ import annotations

import os
import ssl
import sys
import threading
from typing import Any

__all__ = ["LazyTrustContext"]


class LazyTrustContext(ssl.SSLContext):
    """``ssl.create_default_context()``'s settings, with the CA certificates loaded on the first
    handshake rather than at start-up: SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle,
    as httpx does with ``trust_env``. A pull from a plain-http registry or site mirror never reads
    them (~18 ms of a ~150 ms start-up here); an https pull reads them once, as before.
    """

    _trust_lock: threading.Lock
    _trust_loaded: bool

    def __new__(cls) -> LazyTrustContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        self._trust_lock = threading.Lock()
        self._trust_loaded = False
        return self

    def __init__(self) -> None:
        self.verify_mode = ssl.CERT_REQUIRED
        self.check_hostname = True
        if sys.version_info >= (3, 13):  # what create_default_context adds there
            self.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT

    def load_trust(self) -> None:
        """Load the CA certificates now (idempotent, thread-safe)."""
        with self._trust_lock:
            if self._trust_loaded:
                return
            cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
            if cafile:
                self.load_verify_locations(cafile=cafile)
            elif capath:
                self.load_verify_locations(capath=capath)
            else:
                import certifi

                self.load_verify_locations(cafile=certifi.where())
            self._trust_loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.load_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self.load_trust()
        return super().wrap_bio(*args, **kwargs)
