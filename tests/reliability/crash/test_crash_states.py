"""Every crash state of every workload passes the five checks (issue 22), within the CI bound.

Each workload is recorded, its crash states generated under the weak (ALICE) and the
strictly-ordered-metadata (ext4, XFS) persistence models, and each distinct state checked; see
``explore.py``. ``python -m tests.reliability.crash`` (``nox -s crash``) runs the full
exploration. ``OPEN`` lists, per workload, the flagged places of the audit still found on this
code: each fix removes its entries, and a place found that is not listed fails the test, as does
a listed one no longer found.
"""

from __future__ import annotations

import pytest

from .explore import Bound, explore
from .places import LIMITS, PLACES
from .workloads import WORKLOADS

pytestmark = pytest.mark.crash

OPEN: dict[str, set[str]] = {}


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_every_crash_state_passes_the_five_checks(name: str) -> None:
    report = explore(WORKLOADS[name], Bound.ci())
    print(report.summary())
    for finding in report.findings:
        print(finding.line())
    assert not report.error, report.error
    assert report.checked > 0 and report.generated["weak"] >= report.checked // 2
    found = report.places
    expected = OPEN.get(name, set()) | LIMITS.get(name, set())
    assert found <= set(PLACES), f"findings the audit did not list: {sorted(found - set(PLACES))}"
    assert found == expected, f"flagged places found {sorted(found)}, expected {sorted(expected)}: " + "; ".join(
        f.line() for f in report.findings if f.place not in expected
    )


def test_every_flagged_place_is_covered_by_a_workload() -> None:
    covered = {p for w in WORKLOADS.values() for p in w.covers}
    assert covered == set(PLACES)
