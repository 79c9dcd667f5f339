"""What machine a report comes from: cores, memory, disk, kernel, Python, tool versions, load."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(flags & {"sha_ni", "avx2", "avx512f"})
    except OSError:
        pass
    return []


def _meminfo() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def disk_of(path: Path) -> dict[str, Any]:
    """Device, file system, size and (for block devices) whether it is rotational, for *path*."""
    path = path.resolve()
    best: tuple[str, str, str] = ("unknown", "/", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            inside = str(path).startswith(mnt.rstrip("/") + "/") or str(path) == mnt
            if inside and len(mnt) >= len(best[1]):
                best = (dev, mnt, fstype)
    except OSError:
        pass
    dev, mnt, fstype = best
    usage = shutil.disk_usage(path)
    info: dict[str, Any] = {
        "path": str(path),
        "device": dev,
        "mount": mnt,
        "fs": fstype,
        "size_gb": round(usage.total / 1e9, 1),
        "free_gb": round(usage.free / 1e9, 1),
    }
    name = Path(dev).name
    base = name.rstrip("0123456789") if not name.startswith("nvme") else name.split("p")[0]
    rot = Path(f"/sys/block/{base}/queue/rotational")
    if rot.exists():
        info["rotational"] = rot.read_text().strip() == "1"
    model = Path(f"/sys/block/{base}/device/model")
    if model.exists():
        info["model"] = model.read_text().strip()
    elif name.startswith("vd"):
        info["model"] = "virtio block device"
    return info


def describe_machine(workdir: Path) -> dict[str, Any]:
    """Everything a reader needs to judge the numbers of a run on this machine."""
    uname = platform.uname()
    return {
        "hostname_hash": hashlib.sha256(uname.node.encode()).hexdigest()[:8],
        "os": _os_name(),
        "kernel": f"{uname.system} {uname.release}",
        "arch": uname.machine,
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count() or 0,
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0,
        "memory_gib": round(_meminfo() / 2**30, 1),
        "disk": disk_of(workdir),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "openssl": ssl.OPENSSL_VERSION,
        "tools": {
            "aria2c": _first_line(["aria2c", "--version"]),
            "curl": _first_line(["curl", "--version"]),
            "docker-registry": _first_line(["docker-registry", "--version"]),
        },
        "loadavg_start": list(os.getloadavg()),
    }


def describe_short(m: dict[str, Any]) -> str:
    d = m["disk"]
    disk = f"{d['fs']} on {d['device']} ({d.get('model', 'disk')}, {d['size_gb']:g} GB)"
    return (
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']:g} GiB RAM, {disk}, {m['kernel']}, "
        f"Python {m['python']}, {m['os']}"
    )
