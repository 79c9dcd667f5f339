#!/usr/bin/env bash
# Run the whole test suite: installs what it needs, then pytest. Extra arguments go to pytest.
# pytest's exit code 5 (no test collected) is a failure here, never a success.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh || { echo "installing test dependencies failed" >&2; exit 1; }
python3 -m pytest -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
