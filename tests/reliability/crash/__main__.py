"""``python -m tests.reliability.crash [--ci] [--static] [WORKLOAD ...]``: explore the crash states of
the workloads (all by default) and print, per workload, the states explored under each
persistence model and every finding. Exit status 1 when there is a finding (beyond the documented platform limit).

The default is the full exploration (``nox -s crash``): up to two units lost per state, data units
kept in part three ways. ``--ci`` is the bound CI runs (one unit lost, no partial data units).
"""

from __future__ import annotations

import argparse
import sys

from .explore import Bound, explore
from .places import LIMITS
from .workloads import WORKLOADS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.crash", description=__doc__)
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=", ".join(WORKLOADS))
    parser.add_argument("--ci", action="store_true", help="the bound CI runs")
    parser.add_argument("--static", action="store_true", help="checks 1-3 and the resume claims only")
    args = parser.parse_args(argv)
    bound = Bound.ci() if args.ci else Bound.full()
    if args.static:
        bound = Bound(bound.max_omit, bound.partials, bound.fine, dynamic=False)
    failed: list[str] = []
    states = 0
    for name in args.workloads or list(WORKLOADS):
        report = explore(WORKLOADS[name], bound)
        states += sum(report.generated.values())
        print(report.summary(), flush=True)
        if report.error:
            print(f"  ERROR: {report.error}", flush=True)
            failed.append(name)
        limit = LIMITS.get(name, set())
        for finding in report.findings:
            known = " [a platform limit, documented]" if finding.place in limit else ""
            first, _, example = finding.line().partition("\n")
            print(f"  {first}{known}\n{example}", flush=True)
        if report.places - limit:
            failed.append(name)
    print(f"{states} crash states generated; " + (f"findings in: {', '.join(failed)}" if failed else "no finding"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
