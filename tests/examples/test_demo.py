"""Issue 25, item 7: README's first command, ``bash scripts/demo.sh``, installs only the package, pulls
offline from a registry it starts, and leaves nothing behind (no work directory, no server).

The pip install itself is skipped here (``OLLAMA_SEED_DEMO_PYTHON`` names this interpreter, which
has the package); everything after it runs as a user would see it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_runs_offline_and_cleans_up(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "SIZE_MIB": "1", "OLLAMA_SEED_DEMO_PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "== again: nothing is downloaded twice" in out
    assert re.search(r"0 B downloaded, 1\.\d MB reused", out)
    assert re.search(r"library/demo:latest: ok", out)
    assert list(tmp_path.iterdir()) == []  # the work directory (venv, registry store, models) is gone
    port = re.search(r"127\.0\.0\.1:(\d+)/library/demo", out)
    assert port is not None
    with socket.socket() as s:  # the registry it started is stopped
        assert s.connect_ex(("127.0.0.1", int(port.group(1)))) != 0


def test_the_demo_installs_only_the_package() -> None:
    script = (REPO / "scripts" / "demo.sh").read_text()
    assert "install-test-deps" not in script and "requirements/" not in script and "apt-get" not in script
    assert re.search(r'-m pip install [^\n]*"\$repo"', script)
