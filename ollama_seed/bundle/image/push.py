"""``image build --push``: the image's layers streamed from the store straight into a registry.

Through :class:`wire.upload.Uploader`, the same protocol as ``push``: a layer whose digest is
remembered from an earlier build (``.ollama-seed/image-layers.json``) is first asked for with
``HEAD`` and not sent again when the registry has it, so a rebuild after a Modelfile change sends
only the changed layers and the small documents. A new layer goes as one streaming ``PATCH``
whose digest is computed on the way (nothing staged, memory flat). Before the first byte the
largest layer is checked against the registry's documented per-layer cap. Then the configs, each
platform's manifest (by digest) and last the index under the tag.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from ...core.digest import Digest
from ...core.errors import BundleError, ConfigError
from ...core.groups import raise_collapsed
from ...core.imageref import ImageRef
from ...core.ocidoc import Descriptor
from ...core.ociimage import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, PlannedLayer, layer_cap
from ...core.progress import ProgressCallback, ProgressEvent, Status, human_size, no_progress
from ...store.store import ModelStore
from ...wire.registry import Credentials, RegistryClient
from ...wire.upload import DEFAULT_CHUNK, Uploader
from .build import BuiltLayer, ImagePlan, ImageResult
from .layers import LayerCache, LayerStream

if TYPE_CHECKING:
    from ...wire.keys import SigningKey

__all__ = ["apush_image", "check_cap"]


class _ReadAhead:
    """A thread reading (and hashing) a layer a few chunks ahead of the upload, so that reading the
    store and sending to the registry overlap instead of taking turns."""

    DEPTH = 4

    def __init__(self, stream: LayerStream) -> None:
        self.queue: queue.Queue[bytes | BaseException | None] = queue.Queue(self.DEPTH)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(stream,), name="ollama-seed-layer", daemon=True)
        self.thread.start()

    def _run(self, stream: LayerStream) -> None:
        item: bytes | BaseException | None
        try:
            for chunk in stream.chunks():
                if not self._put(bytes(chunk)):
                    return
            item = None
        except BaseException as exc:  # handed to the uploading side
            item = exc
        self._put(item)

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> bytes | None:
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def check_cap(plan: ImagePlan, target: ImageRef) -> None:
    """Refuse, before anything is sent, a layer larger than the registry's documented cap.

    Raises:
        ConfigError: with what to do instead.
    """
    cap = layer_cap(target.host)
    largest = plan.largest()
    if cap is not None and largest > cap[0]:
        raise ConfigError(
            f"the largest layer is {human_size(largest)}, more than {cap[1]} accepts ({human_size(cap[0])}); "
            "the weights file is one blob and cannot be split across layers: push to a registry without "
            "that cap (your own Distribution, Harbor, ACR), or carry the model as a bundle instead"
        )


async def apush_image(
    store: ModelStore,
    plan: ImagePlan,
    ref: str,
    *,
    insecure: bool = False,
    progress: ProgressCallback | None = None,
    credentials: Credentials | None = None,
    transport: Any = None,
    chunk_size: int = DEFAULT_CHUNK,
    concurrency: int = 3,
    sign: SigningKey | None = None,
    cosign_legacy: bool = False,
) -> ImageResult:
    """Push the image of *plan* to *ref* (``registry/repo:tag``).

    With *sign*, the index and each platform's manifest get a cosign signature, as ``push --sign``
    gives a model (what ``cosign sign --recursive`` writes); *cosign_legacy* adds the ``.sig`` tags.
    """
    started = time.monotonic()
    target = ImageRef.parse(ref)
    if target.digest is not None:
        raise ConfigError(f"--push {ref}: give a tag, not a digest (the digest is the result)")
    insecure = insecure or target.scheme == "http"
    check_cap(plan, target)
    opts = plan.options
    label = target.display
    report = progress or no_progress

    loop_thread = threading.get_ident()
    token = anyio.lowlevel.current_token()

    def emit(event: ProgressEvent) -> None:  # progress is delivered on the event loop's thread
        if threading.get_ident() == loop_thread:
            report(event)
        else:
            anyio.from_thread.run_sync(report, event, token=token)

    cache = LayerCache(store)
    outcome: dict[Digest, str] = {}
    built: dict[int, BuiltLayer] = {}
    sent = 0
    try:
        async with RegistryClient(insecure=insecure, transport=transport, credentials=credentials) as client:
            up = Uploader(client, target, chunk_size=chunk_size)
            limiter = anyio.CapacityLimiter(max(1, concurrency))
            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ollama-seed-hash")  # one: in order
            if plan.base is not None:
                report(Status(label, f"base layers of {plan.base.name}"))
                for desc in plan.base.layers:
                    outcome[desc.digest] = await _base_layer(up, plan, target, desc)
            report(Status(label, f"pushing {len(plan.layers)} model layer(s)"))

            async def one(i: int, layer: PlannedLayer) -> None:
                nonlocal sent
                async with limiter:
                    known = cache.get(layer, opts.mtime, opts.compression)
                    if known is not None and await up.exists(known.digest):
                        outcome[known.digest] = "existing"
                        built[i] = BuiltLayer(layer.label, known.digest, known.size, known.diff_id, plan.media_type)
                        return
                    stream = plan.stream(store, layer, pool=pool, emit=emit, label=label)
                    ahead = _ReadAhead(stream)

                    async def body() -> AsyncIterator[bytes]:
                        nonlocal sent
                        while (chunk := await anyio.to_thread.run_sync(ahead.get)) is not None:
                            sent += len(chunk)
                            yield chunk

                    def digest_of() -> Digest:
                        assert stream.result is not None
                        return stream.result.digest

                    try:
                        digest = await up.stream(body(), digest_of)
                    finally:
                        ahead.stop()
                    assert stream.result is not None
                    stream.finished()
                    outcome[digest] = "uploaded"
                    cache.put(layer, opts.mtime, opts.compression, stream.result)
                    built[i] = BuiltLayer(
                        layer.label, digest, stream.result.size, stream.result.diff_id, plan.media_type
                    )

            try:
                async with anyio.create_task_group() as tg:
                    for i, layer in enumerate(plan.layers):
                        tg.start_soon(one, i, layer)
            finally:
                pool.shutdown(wait=True)
            layers = [built[i] for i in range(len(plan.layers))]
            configs, manifests, index = plan.documents(layers)
            report(Status(label, "pushing configs and manifests"))
            for doc in configs:
                if not await up.exists(doc.digest):
                    raw = doc.raw

                    async def small(start: int, n: int, raw: bytes = raw) -> AsyncIterator[bytes]:
                        yield raw[start : start + n]

                    await up.upload(doc.digest, len(raw), small)
            for doc in manifests:
                await up.manifest(str(doc.digest), MANIFEST_MEDIA_TYPE, doc.raw, doc.digest)
            await up.manifest(target.tag, INDEX_MEDIA_TYPE, index.raw, index.digest)
            if sign is not None:
                from ...wire.cosign_attach import attach_signature

                report(Status(label, f"signing with {sign.public_key.fingerprint}"))
                subjects = [(INDEX_MEDIA_TYPE, index), *((MANIFEST_MEDIA_TYPE, doc) for doc in manifests)]
                for media_type, doc in subjects:
                    subject = Descriptor(media_type, doc.digest, len(doc.raw), {})
                    await attach_signature(up, subject, sign, legacy=cosign_legacy)
    except BaseException as exc:
        raise_collapsed(exc)
    finally:
        cache.save()
    report(Status(label, "success"))

    def kind(k: str) -> tuple[Digest, ...]:
        return tuple(d for d, v in outcome.items() if v == k)

    return ImageResult(
        tuple(plan.names),
        index.digest,
        tuple((str(p), m.digest) for p, m in zip(plan.platforms, manifests, strict=True)),
        tuple(layers),
        f"{target.host}/{target.repository}:{target.tag}",
        (target.tag,),
        sent,
        time.monotonic() - started,
        uploaded=kind("uploaded"),
        mounted=kind("mounted"),
        existing=kind("existing"),
    )


async def _base_layer(up: Uploader, plan: ImagePlan, target: ImageRef, desc: Descriptor) -> str:
    """One base layer into the target: there already, mounted from the base's repository (same
    registry), or downloaded and uploaded."""
    base = plan.base
    assert base is not None
    if await up.exists(desc.digest):
        return "existing"
    location = None
    if base.ref is not None and base.ref.host == target.host and base.ref.repository != target.repository:
        location = await up.mount(desc.digest, base.ref.repository)
        if location is None:
            return "mounted"
    file = await base.source.layer(desc)
    path, release = file.path, file.release

    async def body(start: int, n: int) -> AsyncIterator[bytes]:
        f = await anyio.open_file(path, "rb")
        try:
            await f.seek(start)
            left = n
            while left:
                chunk = await f.read(min(left, 1 << 20))
                if not chunk:
                    raise BundleError(f"base layer {desc.digest} is shorter than its descriptor")
                left -= len(chunk)
                yield chunk
        finally:
            await f.aclose()

    try:
        await up.upload(desc.digest, desc.size, body, location)
    finally:
        release()
    return "uploaded"
