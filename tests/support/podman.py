"""What the podman tests need: a busybox image made from Debian's busybox-static, and podman with its own storage.

podman 4.3 runs containers on these machines with two settings (../shared/docs/model-images.md §7):
the ``vfs`` storage driver and ``default_ulimits = []`` in containers.conf (else runc fails with
"error setting rlimit type 7"). Both are given here per test session (``CONTAINERS_CONF``,
``--root``, ``--runroot``), so nothing on the machine is changed and a fresh Debian needs only the
packages (scripts/install-test-deps.sh).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "sha256sum", "find", "touch", "echo", "test", "stat", "wc", "sleep", "ln")


def _blob(root: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def busybox_layout(root: Path, tag: str = "latest") -> Path:
    """An OCI layout holding a one-layer linux/amd64 busybox image: /bin/busybox and a few applet links."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d, mode in (("bin", 0o755), ("tmp", 0o1777), ("mnt", 0o755)):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tf.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tf.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tf.addfile(info)
    layer = _blob(root, buf.getvalue())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(root, json.dumps(config).encode())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
    }
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(root, json.dumps(manifest).encode())}
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return root


class Podman:
    """podman with storage, run state and config of its own under *work*."""

    def __init__(self, work: Path) -> None:
        binary = shutil.which("podman")
        if binary is None:
            raise FileNotFoundError("podman")
        self.binary, self.work = binary, work
        work.mkdir(parents=True, exist_ok=True)
        (work / "containers.conf").write_text("[containers]\ndefault_ulimits = []\n")
        self.env = {**os.environ, "CONTAINERS_CONF": str(work / "containers.conf"), "TMPDIR": str(work)}

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [
            self.binary,
            "--root", str(self.work / "root"),
            "--runroot", str(self.work / "run"),
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            *args,
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
