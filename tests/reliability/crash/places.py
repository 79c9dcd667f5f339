"""Which flagged place of the audit (``crash-consistency.md`` §3, issue 22) a finding shows.

The audit numbered them: (a1) macOS's fallback when ``F_FULLFSYNC`` is refused; (b1) a manifest
naming a blob that is not durable; (b2) blobs unlinked before the manifest's removal is durable;
(b3) ``fsync_dir`` swallowing EIO; (b4) ``ensure --verify`` deleting a corrupt blob before its
replacement exists; (b5) directories never synced into their parent (the store, a manifest's);
(b6) the same for an exported OCI layout; (c1) a torn manifest breaking ``rm``, ``verify`` and the
mirror's eviction; (c2) the same breaking ``create``; (d1) resume counters ahead of the durable
data; (d2) an old resume state coming back beside a restarted data file; (e) a blob's mode set
after its fsync. A finding the audit did not list is ``new``.
"""

from __future__ import annotations

from .checks import Problem
from .model import CrashState, Unit
from .workloads import Workload

__all__ = ["LIMITS", "PLACES", "place"]

PLACES = ("a1", "b1", "b2", "b3", "b4", "b5", "b6", "c1", "c2", "d1", "d2", "e")
# What no code can fix: a macOS file system that refuses both F_FULLFSYNC and F_BARRIERFSYNC orders
# nothing, so a power cut can leave lost bytes at a blob's name (docs/reliability.md, "Power loss").
LIMITS: dict[str, set[str]] = {"pull-macos-unordered": {"a1"}}


def place(w: Workload, p: Problem, st: CrashState, units: list[Unit]) -> str:
    """The flagged place *p* (found in state *st* of workload *w*) shows."""
    lost = [units[i] for i in sorted(st.omitted)]
    if w.platform == "macos-unordered" and p.check in "123":
        return "a1"  # nothing orders anything there: every loss is the platform's
    if p.check == "1" and "mode" in p.message:
        return "e"
    if p.check == "4" and "success over damaged" in p.message:
        return "b1"  # a stamp or a manifest vouched for bytes that were never made durable
    if p.check == "4" and ("trust" in p.message or "mismatch" in p.message):
        return "d2" if "older resume state" in p.message else "d1"
    if p.check == "5":
        return "c2" if p.message.startswith("create") else "c1"
    if w.platform.startswith("macos") and p.check in "123":
        return "a1"
    if any(u.kind == "mkdir" for u in lost):
        return "b6" if w.name == "export-oci" else "b5"
    if w.name == "export-oci":
        return "b6"
    if w.name == "pull-eio" and p.check in "23":
        return "b3"
    if w.name in ("rm-prune", "evict"):
        return "b2"
    if w.name == "verify-repair" and p.check == "2":
        return "b4"
    if w.name in ("concurrent", "ollama-pull") and p.check in "23":
        return "b1"
    return "new"
