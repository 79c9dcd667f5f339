"""An asyncio HTTP/1.1 reverse proxy for bandwidth shaping, latency and fault injection.

Loopback only. Request and response heads are relayed byte for byte (exceptions: ``ignore_range``
strips Range/If-Range, and the CDN marker is taken out of the query before forwarding).
Content-Length, chunked and close-delimited bodies, keep-alive, HEAD, 1xx and request bodies
(pushes through the proxy) are handled. Bandwidth caps shape what is sent to clients, heads
included, in bytes/s: one token bucket per client connection, one shared by all. Faults (5xx,
mid-body drops, a flipped byte) only hit paths containing ``fault_path`` (default ``/blobs/``)
and are bounded in total by ``max_faults``. ``redirect_blobs_to`` answers blob GET/HEAD with a
307 to ``BASE + path + ?seed_cdn=1``; marked requests are served (with ``cdn_expire_after`` they
also carry ``seed_token=N``, and a token expires after that many marked requests: 403).

    async with ShapingProxy(registry.url, per_conn_bps=mbit(50)) as p: ...p.url...
    with ProxyThread(registry.url, drop_after_bytes=1000) as p: ...p.url, p.stats.snapshot()...
    python -m tests.support.proxy --listen 127.0.0.1:0 --upstream URL [--per-conn-mbps 50] ...
        (prints the URL, serves until SIGTERM/SIGINT, then prints one JSON stats line)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from types import TracebackType
from typing import Any

from tests.support._http import Stats
from tests.support.shaping import ProxyOptions, ShapingProxy, mbit

__all__ = ["ProxyOptions", "ProxyThread", "ShapingProxy", "Stats", "mbit"]


class ProxyThread:
    """A ShapingProxy running its own event loop in a daemon thread."""

    def __init__(self, upstream_url: str, **opts: Any) -> None:
        self.proxy = ShapingProxy(upstream_url, **opts)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shaping-proxy", daemon=True)

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def stats(self) -> Stats:
        return self.proxy.stats

    def _run(self) -> None:
        async def main() -> None:
            async with self.proxy:
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as e:  # surfaced by start()
            self._error = e
        finally:
            self._ready.set()

    def start(self) -> ProxyThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or self._stop is None:
            raise RuntimeError(f"proxy failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


async def _serve(upstream: str, host: str, port: int, opts: ProxyOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ShapingProxy(upstream, host=host, port=port, options=opts) as p:
        # SIGUSR1: the counters now, as one JSON line (the harness reads them at the instant it
        # kills a client: what a dying client's connections count afterwards is not what it got)
        loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(p.stats.snapshot()), flush=True))
        print(p.url, flush=True)
        await stop.wait()
    print(json.dumps(p.stats.snapshot()), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.support.proxy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--per-conn-mbps", type=float, default=0.0, help="Mbit/s (1e6 bit/s)")
    ap.add_argument("--total-mbps", type=float, default=0.0, help="Mbit/s shared by all connections")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--drop-after-bytes", type=int, default=None)
    ap.add_argument("--drop-prob", type=float, default=1.0)
    ap.add_argument("--drop-style", choices=["fin", "rst", "stall"], default="fin")
    ap.add_argument("--stall-s", type=float, default=30.0)
    ap.add_argument("--fail-rate", type=float, default=0.0)
    ap.add_argument("--fail-status", type=int, action="append", help="repeatable; default 503")
    ap.add_argument("--max-faults", type=int, default=None)
    ap.add_argument("--fault-path", default="/blobs/", help="substring of the path ('' = every path)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--ignore-range", action="store_true")
    ap.add_argument("--corrupt-byte-at", type=int, default=None)
    ap.add_argument("--redirect-blobs-to", default=None, help="BASE URL; '{port}' = this proxy's port")
    ap.add_argument("--cdn-expire-after", type=int, default=None)
    a = ap.parse_args(argv)
    opts = ProxyOptions(
        per_conn_bps=mbit(a.per_conn_mbps),
        total_bps=mbit(a.total_mbps),
        latency_ms=a.latency_ms,
        drop_after_bytes=a.drop_after_bytes,
        drop_prob=a.drop_prob,
        drop_style=a.drop_style,
        stall_s=a.stall_s,
        fail_rate=a.fail_rate,
        fail_statuses=tuple(a.fail_status or (503,)),
        max_faults=a.max_faults,
        fault_path=a.fault_path,
        seed=a.seed,
        ignore_range=a.ignore_range,
        corrupt_byte_at=a.corrupt_byte_at,
        redirect_blobs_to=a.redirect_blobs_to,
        cdn_expire_after=a.cdn_expire_after,
    )
    host, _, port = a.listen.rpartition(":")
    asyncio.run(_serve(a.upstream, host or "127.0.0.1", int(port), opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
