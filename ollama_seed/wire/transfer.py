"""Downloading one blob: concurrent ranged GETs into a staging file, verified, installed.

How it works:

- The blob is staged in ``.ollama-seed/staging/sha256-<hex>.data``, pre-sized (and
  pre-allocated, so a full disk shows up before the first byte). Its resume state,
  ``…state``, is mapped into memory and a piece's counter is updated after each write, so
  a process killed at any instant resumes with at most the bytes in flight lost.
- Workers (``connections`` per blob, and a shared limiter across blobs) claim runs of
  pieces from :class:`~ollama_seed.core.plan.Scheduler` and fetch each with one Range request.
  :func:`~ollama_seed.core.ranges.classify` decides what a response means; this module only acts.
- A registry's 307 to storage on another host is followed by hand, once per blob; the
  Authorization header never goes there. A storage URL that starts refusing (expired
  signature) is resolved again through the registry.
- Hashing follows the contiguous on-disk prefix while the download runs (see
  :mod:`wire.hashing`: from a reader's buffer when its bytes land where the hash stands, else
  from the mapped page cache), so once the last byte lands only a short tail remains to hash:
  verification costs no second full read of a large blob. The blob's state in flight and the
  tasks that hash and sync behind the workers are :mod:`wire.blobjob`'s.
- After size and sha256 match, the data is fsynced and renamed into ``blobs/``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from ..core.errors import IntegrityError, RegistryProtocolError, SeedError, TransferError
from ..core.groups import collapse, leaves
from ..core.manifest import Layer
from ..core.plan import BlobPlan, Run, Scheduler
from ..core.progress import LayerNote, retry_reason
from ..core.ranges import Accept, Attempts, Expired, Fail, Ignored, Redirect, Retry, backoff, classify, range_header
from ..store import oscalls
from ..store.fsutil import raise_os_error
from ..store.staging import open_staging, staging_paths
from ..store.store import ModelStore
from .blobjob import BlobJob, Within, follow_hash, write_back
from .direct import (
    READ_SIZE,
    DirectPool,
    DirectResponse,
    LinkError,
    LowSpeed,
    drain,
    error_text,
    open_in_thread,
    read_body,
    run_in_thread,
)
from .errors import describe_transport_error, httpx_transport_errors
from .httpx_body import stream_watched, watchdog
from .ramp import Ramp
from .registry import RegistryClient, RepoName, user_agent
from .throttle import TokenBucket
from .urls import origin, shown_url

if TYPE_CHECKING:
    import httpx

    from .redirects import RedirectRule

__all__ = ["BlobDownloader", "TransferConfig", "Within"]

MAX_REDIRECTS = 10
MAX_REFRESHES = 5
RESUME = "run the pull again to resume"
log = logging.getLogger("ollama_seed.transfer")


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """Knobs of the transfer engine."""

    connections: int = 16
    stall_timeout: float = 30.0
    max_attempts: int = 8  # attempts in a row without real progress; then the blob fails (resumable)
    retry_budget: int = 64  # attempts of one run in all, progress or not: a lying server ends too
    min_rate: float = 1024.0  # bytes/s over stall_timeout below which a body counts as stalled
    integrity_retries: int = 1
    progress_interval: float = 0.1
    unique_staging: bool = False
    sleep: Callable[[float], object] | None = None
    direct: bool = True  # blocking sockets in threads for bodies on direct links (see wire.direct)


class _RangeIgnored(Exception):
    pass


class BlobDownloader:
    """Downloads blobs for one pull session."""

    def __init__(
        self,
        client: RegistryClient,
        store: ModelStore,
        limiter: anyio.CapacityLimiter,
        bucket: TokenBucket | None,
        config: TransferConfig,
    ) -> None:
        self.client = client
        self.store = store
        self.limiter = limiter
        self.bucket = bucket
        self.cfg = config
        # The direct path: not with an injected transport (httpx owns those requests), nor with
        # a rate limit (the token bucket is the event loop's), nor when OLLAMA_SEED_DIRECT=0.
        use_direct = (
            config.direct
            and not client.custom_transport
            and bucket is None
            and os.environ.get("OLLAMA_SEED_DIRECT", "1") != "0"
        )
        shared = client.direct_pool
        self._own_pool = use_direct and (shared is None or shared.timeout != config.stall_timeout)
        self.direct = (
            DirectPool(timeout=config.stall_timeout, user_agent=user_agent(), context=client.tls)
            if self._own_pool
            else shared
            if use_direct
            else None
        )
        self._threads = anyio.CapacityLimiter(int(limiter.total_tokens) + 4)
        self._buffers = threading.local()
        self.redirects: RedirectRule | None = None  # every redirect is followed (see wire.redirects)

    def close(self) -> None:
        """Close the kept-alive direct connections (the client closes those it shares)."""
        if self.direct is not None and self._own_pool:
            self.direct.close()

    async def _sleep(self, seconds: float) -> None:
        if self.cfg.sleep is not None:
            self.cfg.sleep(seconds)
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.sleep(seconds)

    # -- the download --------------------------------------------------------------------
    async def download(
        self,
        name: RepoName,
        layer: Layer,
        on_bytes: Callable[[int], None],
        *,
        base: str | None = None,
        integrity_retries: int | None = None,
        on_note: Callable[[LayerNote], None] | None = None,
        within: Within | None = None,
    ) -> int:
        """Fetch *layer* into ``blobs/`` (from the mirror *base* if given); the bytes received.

        *on_note* hears of a resume (bytes of an earlier run kept) and of each retry. *within*:
        fetch the blob from inside another blob (an image layer), through the same staging.
        """
        data, state = staging_paths(self.store.layout, layer, unique=self.cfg.unique_staging)
        received = 0
        retries = self.cfg.integrity_retries if integrity_retries is None else integrity_retries
        for attempt in range(retries + 1):
            job = self._start(name, layer, data, state, fresh=attempt > 0, base=base)
            if within is not None:
                job.blob_url = self.client.blob_url(name, within.digest, base=base)
                job.shift, job.remote_size = within.offset, within.size
            job.on_note = on_note
            try:
                on_bytes(job.plan.completed)
                if on_note is not None and job.plan.completed and attempt == 0:
                    on_note(LayerNote(name.display, str(layer.digest), "resume", layer.size, job.plan.completed))
                await self._fetch(job, on_bytes)
                actual = job.digest.hexdigest()
                received += job.sched.received
                if actual == layer.digest.hex and os.fstat(job.fd).st_size == layer.size:
                    await anyio.to_thread.run_sync(self.store.seal, job.fd, data)
                    job.close()
                    self.store.install_blob(data, layer)
                    oscalls.host.remove(state)
                    return received
                problem = IntegrityError(
                    f"sha256 mismatch for {layer.digest}: the downloaded bytes hash to sha256:{actual}; "
                    "the download was discarded" + ("; run the pull again" if attempt else ", fetching it again"),
                    expected=str(layer.digest),
                    actual=f"sha256:{actual}",
                )
            finally:
                job.close()
            oscalls.host.remove(data)
            oscalls.host.remove(state)
            if attempt == retries:
                raise problem
            if on_note is not None:
                on_note(LayerNote(name.display, str(layer.digest), "retry", layer.size, 0, "sha256 mismatch"))
        raise AssertionError("unreachable")

    def _start(
        self, name: RepoName, layer: Layer, data: Path, state: Path, *, fresh: bool, base: str | None = None
    ) -> BlobJob:
        fd, plan, mm = open_staging(layer, data, state, fresh=fresh)

        def on_record(i: int, value: int) -> None:
            if mm is not None:
                oscalls.host.poke(mm.mapped, BlobPlan.done_offset(i), value.to_bytes(8, "little"))

        sched = Scheduler(plan, self.cfg.connections, on_record)
        # At a mirror the requests carry the mirror's own login (RegistryClient.at), not the registry's.
        return BlobJob(
            self.client.at(name, base),
            layer,
            fd,
            plan,
            sched,
            mm,
            self.client.blob_url(name, str(layer.digest), base=base),
            synced=plan.synced,
        )

    async def _fetch(self, job: BlobJob, on_bytes: Callable[[int], None]) -> None:
        done = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow_hash, job, done, on_bytes, self.cfg.progress_interval)
                tg.start_soon(watchdog, job.watches, self.cfg.stall_timeout, done)
                tg.start_soon(write_back, job, done)
                try:
                    connections = min(self.cfg.connections, max(1, job.plan.pieces))
                    ramp = Ramp(connections)
                    async with anyio.create_task_group() as workers:
                        for i in range(connections):
                            workers.start_soon(self._worker, job, ramp if i >= ramp.base else None)
                except BaseException as exc:
                    if not all(isinstance(e, _RangeIgnored) for e in leaves(exc)):
                        raise
                    job.reset()
                    await self._fetch_run(job, Run(0, job.plan.pieces, 0), ranged=False)
                done.set()
        except BaseException as exc:
            err = collapse(exc)
            if isinstance(err, OSError) and not isinstance(err, SeedError):
                raise_os_error(err, f"writing {job.layer.digest}")
            raise err from None
        await anyio.to_thread.run_sync(job.digest.catch_up, job.plan.size)
        log.debug(
            "%s: %d of %d bytes hashed from the readers' buffers",
            job.layer.digest,
            job.digest.inline_bytes,
            job.plan.size,
        )
        on_bytes(job.plan.completed)

    async def _worker(self, job: BlobJob, ramp: Ramp | None) -> None:
        """Fetch runs until none is left; a probe (*ramp* given) fetches one piece first and then
        stays only if the link needs it (see wire.ramp)."""
        while (run := job.sched.claim(1 if ramp is not None else None)) is not None:
            try:
                rate = await self._fetch_run(job, run, ranged=True)
            finally:
                job.sched.release(run)
            if ramp is not None:
                keep, why = ramp.keep(rate)
                if not keep:
                    job.sched.retire()
                    log.debug("%s: a connection left after its first piece: %s", job.layer.digest, why)
                    return
                ramp = None

    # -- one run -------------------------------------------------------------------------
    async def _fetch_run(self, job: BlobJob, run: Run, *, ranged: bool) -> float | None:
        """Fetch *run* (retrying as its responses say); the bytes/s of the body that finished it,
        from its response head to its last byte (None if no body did)."""
        layer, plan = job.layer, job.plan
        refreshes = redirects = 0
        tries = Attempts(self.cfg.max_attempts, self.cfg.retry_budget, run.pos)
        error = "no attempt made"
        while not job.sched.finished(run):
            if not ranged and run.pos:
                job.reset()
                run.pos = 0
            url = job.direct_url or job.blob_url
            via_storage = job.direct_url is not None
            start, end = run.pos, run.limit(plan)
            headers = {"Accept-Encoding": "identity"}
            if ranged:
                headers["Range"] = range_header(start + job.shift, end + job.shift)
            elif job.shift:
                raise TransferError(
                    f"{shown_url(url)} ignores Range requests; cannot fetch {layer.digest} from inside a layer"
                )
            before = run.pos
            wait: float | None = None
            try:
                async with self.limiter:
                    resp = await self._send(job, url, headers, ranged=ranged)
                    try:
                        outcome = classify(
                            resp.status_code,
                            resp.headers,
                            start=start + job.shift,
                            end=end + job.shift,
                            size=job.remote_size if job.remote_size is not None else layer.size,
                            ranged=ranged,
                            via_storage=via_storage,
                        )
                        if isinstance(outcome, Accept):
                            stalled, head_at = False, time.monotonic()
                            if isinstance(resp, DirectResponse):
                                await run_in_thread(
                                    functools.partial(self._read_run, job, run, resp), resp.abort, self._threads
                                )
                            else:
                                w = (job.watches, job.fd, job.sched, run, resp, self.bucket)
                                stalled = await stream_watched(*w, None if self.bucket else self._low_speed())
                            if job.sched.finished(run):
                                took = time.monotonic() - head_at
                                return (run.pos - before) / took if took > 0 else float("inf")
                            error = self._stalled if stalled else f"the body ended early at byte {run.pos} of {end}"
                        elif isinstance(outcome, Redirect):
                            redirects += 1
                            if redirects > MAX_REDIRECTS:
                                raise RegistryProtocolError(f"more than {MAX_REDIRECTS} redirects for {layer.digest}")
                            job.direct_url = urllib.parse.urljoin(url, outcome.location)
                            if self.redirects is not None:
                                await self.redirects.check(job.direct_url, own=origin(job.blob_url)[1])
                            await drain(resp, self._threads)
                            continue
                        elif isinstance(outcome, Ignored):
                            raise _RangeIgnored
                        elif isinstance(outcome, Retry):
                            error, wait = outcome.reason, outcome.after
                            await drain(resp, self._threads)
                        elif isinstance(outcome, Expired):
                            refreshes += 1
                            if refreshes > MAX_REFRESHES:
                                raise TransferError(
                                    f"{layer.digest}: storage kept refusing fresh URLs ({outcome.reason})"
                                )
                            job.direct_url = None
                            await drain(resp, self._threads)
                            continue
                        elif isinstance(outcome, Fail):
                            said = await error_text(resp, self._threads) if (outcome.status or 0) >= 400 else ""
                            raise RegistryProtocolError(
                                f"blob {layer.digest} from {shown_url(url)}: {outcome.reason}{said}",
                                url=shown_url(url),
                                status=outcome.status,
                            )
                    finally:
                        if isinstance(resp, DirectResponse):
                            resp.release()
                        else:
                            with anyio.CancelScope(shield=True):
                                await resp.aclose()
            except httpx_transport_errors() as exc:
                error = describe_transport_error(exc, url)
            except LinkError as exc:
                error = str(exc)
            except TimeoutError as exc:  # no byte for stall_timeout, or a trickle (LowSpeed)
                error = f"stalled: {exc}" if str(exc).startswith("slower") else self._stalled
            if tries.failed(before, run.pos, end):
                raise TransferError(
                    f"downloading {layer.digest} failed after {tries.total} attempts: {error}; {RESUME}"
                )
            delay = wait if wait is not None else backoff(tries.in_row - 1)
            if job.on_note is not None:
                job.on_note(
                    LayerNote(
                        job.name.display,
                        str(layer.digest),
                        "retry",
                        layer.size,
                        plan.completed,
                        retry_reason(error),
                        delay,
                    )
                )
            await self._sleep(delay)
        return None  # finished by others (a steal took the rest)

    async def _send(
        self, job: BlobJob, url: str, headers: dict[str, str], *, ranged: bool
    ) -> httpx.Response | DirectResponse:
        """The request, on a direct connection when the link allows one, else through httpx."""
        direct = self.direct
        if direct is not None and ranged and direct.usable(url):
            resp = await open_in_thread(direct, url, self.client.with_token(job.name, url, headers), self._threads)
            if resp.status_code != 401:
                return resp
            await drain(resp, self._threads)  # its small body, so that the connection is kept
            resp.release()  # httpx answers the challenge and keeps the token for the next requests
        with anyio.fail_after(self.cfg.stall_timeout):
            return await self.client.send(job.name, "GET", url, headers)

    def _read_run(self, job: BlobJob, run: Run, resp: DirectResponse) -> None:
        """In a worker thread: the body of *resp* into the staging file (see direct.read_body)."""
        view = getattr(self._buffers, "view", None)
        if view is None:
            view = self._buffers.view = memoryview(bytearray(READ_SIZE))
        read_body(resp, job.fd, job.sched, run, view, job.digest.inline, self._low_speed())

    def _low_speed(self) -> LowSpeed | None:
        return LowSpeed(self.cfg.min_rate, self.cfg.stall_timeout) if self.cfg.min_rate > 0 else None

    @property
    def _stalled(self) -> str:
        return f"stalled: no data for {self.cfg.stall_timeout:g} s"
