"""Where ``image verify`` and ``image extract`` read an image from: an OCI layout directory or a registry.

Both answer the same questions: the document a reference names (an index or a manifest), the
bytes of a small blob (a manifest, a config; checked against its digest and size), and a layer as
a local file. A layout's layers are its blob files; a registry's are downloaded by the pull
engine (:mod:`wire.transfer`: concurrent ranged requests, resumable, hashed on the way) into
``.ollama-seed/image-layers/`` of the store, on the same file system, and removed once read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.digest import Digest
from ...core.errors import BundleError, IntegrityError, ModelNotFound, RegistryError
from ...core.imageref import ImageRef
from ...core.manifest import MAX_MANIFEST_BYTES, Layer
from ...core.ocidoc import ACCEPT, Descriptor
from ...core.sigrecord import StoredSignature
from ...core.trustpolicy import Subject
from ...store.store import ModelStore
from ..format.oci import parse_layout
from ..sources.files import read_small
from .layout import ref_name
from .members import LayerFile

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .api import RegistryOptions

__all__ = ["LayoutSource", "RegistrySource", "checked_small", "pick_ref"]


def checked_small(data: bytes, desc: Descriptor, where: str) -> bytes:
    if len(data) != desc.size or hashlib.sha256(data).hexdigest() != desc.digest.hex:
        raise BundleError(
            f"{where}: blob {desc.digest} does not match its descriptor ({len(data)} bytes, sha256:"
            f"{hashlib.sha256(data).hexdigest()}); the image is damaged or was tampered with"
        )
    return data


def pick_ref(index: bytes, tag: str | None, where: Path) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """The ``index.json`` entry of *tag* (default: the only image's ref, else ``latest``), every entry,
    and the tag. Refs ``sha256-<hex>`` name signature lists (see :mod:`.trusted`), not images.

    Raises:
        BundleError: not an image index. ModelNotFound: no such tag.
    """
    try:
        doc = json.loads(index)
        entries = [m for m in doc["manifests"] if isinstance(m, dict)]
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{where}: index.json is not an OCI image index") from None
    refs = {name: m for m in entries if (name := ref_name(m)) is not None}
    images = [r for r in refs if not r.startswith("sha256-")]
    if tag is None:
        tag = images[0] if len(images) == 1 else "latest"
    if tag not in refs:
        known = ", ".join(sorted(images)) or "none"
        raise ModelNotFound(f"{where} has no image tagged {tag!r} (its tags: {known}); add :TAG")
    return refs[tag], entries, tag


class LayoutSource:
    """An OCI image layout directory; *tag* picks the ref (default: the only one, else ``latest``)."""

    def __init__(self, root: Path, tag: str | None) -> None:
        self.root = root
        if not (root / "oci-layout").is_file():
            raise BundleError(f"{root} is not an OCI image layout (no oci-layout file)")
        parse_layout(read_small(root / "oci-layout", 4096))
        self.entry, self.entries, tag = pick_ref(read_small(root / "index.json", MAX_MANIFEST_BYTES), tag, root)
        self.label = f"{root}:{tag}"
        self.trust_name: Subject = f"oci:{root.resolve()}:{tag}"

    async def signatures(self, subject: Descriptor) -> list[StoredSignature]:
        """The cosign signatures of *subject* the layout lists (see :mod:`.trusted`)."""
        from .trusted import checked_blob, layout_signatures

        async def read(digest: Digest, limit: int) -> bytes | None:
            path = self.root / "blobs" / "sha256" / digest.hex
            if not path.is_file():
                return None
            return checked_blob(read_small(path, limit), digest, self.label)

        return await layout_signatures(self.entries, subject.digest, read)

    async def resolve(self) -> tuple[Descriptor, bytes]:
        from ...core.ocidoc import parse_descriptor

        desc = parse_descriptor(self.entry, f"{self.root}/index.json entry")
        return desc, await self.small(desc)

    async def small(self, desc: Descriptor) -> bytes:
        return checked_small(read_small(self.path(desc), MAX_MANIFEST_BYTES), desc, self.label)

    def path(self, desc: Descriptor) -> Path:
        return self.root / "blobs" / "sha256" / desc.digest.hex

    async def layer(self, desc: Descriptor) -> LayerFile:
        """The layer's file (its digest is checked as it is read).

        Raises:
            BundleError: missing, or not a regular file (a FIFO would make a reader wait forever).
        """
        path = self.path(desc)
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError as exc:
            raise BundleError(f"{self.label}: layer {desc.digest} cannot be read ({exc.strerror or exc})") from None
        if not regular:
            raise BundleError(f"{self.label}: layer {desc.digest} ({path}) is not a regular file")
        return LayerFile(path, lambda: None, False)

    async def aclose(self, *, done: bool = True) -> None:
        return None


class RegistrySource:
    """An image in a registry, read through the pull machinery (tokens, retries, ranged downloads)."""

    def __init__(
        self, ref: ImageRef, scratch: Path, *, insecure: bool = False, **client: Unpack[RegistryOptions]
    ) -> None:
        from ...wire.registry import RegistryClient

        self.ref, self.insecure = ref, insecure
        self.label = ref.display
        self.trust_name: Subject = ref
        self.client = RegistryClient(insecure=insecure, **client)
        self.scratch = ModelStore(scratch)
        self.downloader: object | None = None
        self.direct: object | None = None

    async def signatures(self, subject: Descriptor) -> list[StoredSignature]:
        """The cosign signatures the registry keeps for *subject* (referrers, fallback tag, ``.sig``)."""
        from ...wire.cosign_fetch import fetch_signatures

        return await fetch_signatures(self.client, self.ref, subject)

    async def _get(self, url: str, accept: str) -> tuple[int, str, bytes]:
        status, body = await self.client.get_small(self.ref, url, {"Accept": accept, "Accept-Encoding": "identity"})
        media_type = ""
        if status == 200 and body[:1] == b"{":
            with contextlib.suppress(ValueError, AttributeError):
                found = json.loads(body).get("mediaType")
                media_type = found if isinstance(found, str) else ""
        return status, media_type, body

    def _base(self) -> str:
        return self.ref.base_url(insecure=self.insecure)

    async def resolve(self) -> tuple[Descriptor, bytes]:
        url = f"{self._base()}/v2/{self.ref.repository}/manifests/{self.ref.reference}"
        status, ctype, body = await self._get(url, ACCEPT)
        if status == 404:
            raise ModelNotFound(f"image {self.ref.display} not found (GET {url} answered 404)", url=url, status=404)
        if status != 200:
            raise RegistryError(f"GET {url} answered HTTP {status}", url=url, status=status)
        digest = Digest.of(body)
        if self.ref.digest is not None and digest != self.ref.digest:
            raise IntegrityError(
                f"{self.ref.display}: the registry's manifest is {digest}", expected=str(self.ref.digest)
            )
        return Descriptor(ctype, digest, len(body), {}), body

    async def small(self, desc: Descriptor) -> bytes:
        kind = "manifests" if "manifest" in desc.media_type or "index" in desc.media_type else "blobs"
        url = f"{self._base()}/v2/{self.ref.repository}/{kind}/{desc.digest}"
        accept = desc.media_type if kind == "manifests" else "*/*"
        status, _, body = await self._get(url, accept)
        if status in (301, 302, 303, 307, 308):  # a blob in a storage service: follow the registry's redirect
            _, location = await self._location(url, {"Accept": accept})
            if location:
                status, _, body = await self._get(urllib.parse.urljoin(url, location), accept)
        if status != 200:
            raise RegistryError(f"GET {url} answered HTTP {status}", url=url, status=status)
        return checked_small(body, desc, self.label)

    async def layer(self, desc: Descriptor) -> LayerFile:
        """Download the layer into scratch space (resuming an earlier attempt), verified by its digest."""
        import anyio

        from ...wire.transfer import BlobDownloader, TransferConfig

        if self.downloader is None:
            self.scratch.prepare()
            self.downloader = BlobDownloader(
                self.client, self.scratch, anyio.CapacityLimiter(64), None, TransferConfig()
            )
        assert isinstance(self.downloader, BlobDownloader)
        layer = Layer(desc.media_type, desc.digest, desc.size)
        if not self.scratch.has_blob(layer):
            await self.downloader.download(self.ref, layer, lambda n: None)
        path = self.scratch.layout.blob(desc.digest)
        return LayerFile(path, lambda: path.unlink(missing_ok=True), True)

    async def _range(self, desc: Descriptor, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a small range of a layer (a registry's 307 to storage is followed once)."""

        url = f"{self._base()}/v2/{self.ref.repository}/blobs/{desc.digest}"
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        for _ in range(2):
            status, body = await self.client.get_small(self.ref, url, headers)
            if status in (301, 302, 303, 307, 308):
                _, location = await self._location(url, headers)
                if location:
                    url = urllib.parse.urljoin(url, location)
                    continue
            if status == 206 and len(body) == end - start:
                return body
            raise RegistryError(f"GET {url} ({headers['Range']}) answered HTTP {status}", url=url, status=status)
        raise RegistryError(f"GET {url}: too many redirects", url=url)

    async def _location(self, url: str, headers: dict[str, str]) -> tuple[int, str | None]:
        """The Location of a redirect (asked again through httpx, which keeps the headers)."""
        from ...wire.registry import map_errors

        with map_errors(url):
            resp = await self.client.send(self.ref, "GET", url, headers)
            await resp.aclose()
        return resp.status_code, resp.headers.get("location")

    async def locate(self, desc: Descriptor, root: str, blob: Digest) -> tuple[int, int] | None:
        """Where the one blob of an uncompressed model layer sits in it: (offset, size), from a small
        ranged request for its tar header; the header must name that blob and nothing but zeros may
        follow it. None when the layer is not laid out so (it is then read whole).

        Raises:
            BundleError: a member that has no place there, or data after the blob.
        """
        found = blob_offset(await self._range(desc, 0, min(desc.size, MAX_HEAD)), root, blob)
        if found is None:
            return None
        offset, size = found
        tail = desc.size - offset - size
        if not 1024 <= tail <= MAX_TAIL + 1024 + 511:
            return None
        if any(await self._range(desc, offset + size, desc.size)):
            raise BundleError(f"layer {desc.digest} holds data after its blob {blob}; refusing it")
        return offset, size

    async def fetch_at(
        self, desc: Descriptor, blob: Digest, at: tuple[int, int], store: ModelStore, on_bytes: Callable[[int], None]
    ) -> None:
        """Fetch the blob at *at* (see :meth:`locate`) straight into *store*: ranged requests at its
        offset, through the pull engine's staging (the one a pull of that blob uses, so either
        resumes the other), verified by the blob's own digest, installed as a pulled blob is."""
        import anyio

        from ...wire.transfer import BlobDownloader, TransferConfig, Within

        if self.direct is None:
            self.direct = BlobDownloader(self.client, store, anyio.CapacityLimiter(64), None, TransferConfig())
        assert isinstance(self.direct, BlobDownloader)
        layer = Layer("", blob, at[1])
        if not store.has_blob(layer):
            await self.direct.download(self.ref, layer, on_bytes, within=Within(str(desc.digest), at[0], desc.size))

    async def aclose(self, *, done: bool = True) -> None:
        """Close the connections; once the image was read, remove the scratch space (after a failure it
        stays: the next run resumes the layers it holds)."""
        for downloader in (self.downloader, self.direct):
            if downloader is not None:
                downloader.close()  # type: ignore[attr-defined]
        await self.client.aclose()
        if done:
            shutil.rmtree(self.scratch.root, ignore_errors=True)


MAX_HEAD = 64 * 1024
MAX_TAIL = 1 << 20


def blob_offset(head: bytes, root: str, blob: Digest) -> tuple[int, int] | None:
    """Where the data of ``<root>/blobs/<blob>`` starts in a layer whose first bytes are *head*, and its
    size; None unless the layer is the models path's directories and then that one file.

    Raises:
        BundleError: a member that has no place in a model layer (``..``, a link, outside the path).
    """
    from ..format.names import MemberKind
    from ..format.tar import DIR, FILE, PAX, padding, parse_header, parse_pax, pax_size
    from .members import image_classifier

    classify = image_classifier(root)
    pos, pax = 0, {}
    while pos + 512 <= len(head):
        header = parse_header(head[pos : pos + 512])
        pos += 512
        if header is None:
            return None
        if header.kind == PAX:
            if pos + header.size > len(head):
                return None
            pax = parse_pax(head[pos : pos + header.size])
            pos += header.size + padding(header.size)
            continue
        if header.refused:
            raise BundleError(f"refusing image layer member {header.name[:200]!r}: it is {header.kind}")
        name, size = pax.get("path") or header.name, pax_size(pax, header.size)
        pax = {}
        ref = classify(name, is_dir=header.kind == DIR)
        if header.kind == DIR:
            continue
        if header.kind != FILE or ref.kind is not MemberKind.BLOB or ref.digest != blob:
            return None
        return pos, size
    return None
