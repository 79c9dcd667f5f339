#!/usr/bin/env bash
# ollama-seed's main job, offline, in a throw-away directory: pull a model from a registry into an
# Ollama models directory, pull it again (nothing is downloaded twice), list and verify it.
#
# Installs only ollama-seed and its runtime dependencies (pip install of this checkout) into a
# virtual environment inside the work directory: no test tools, no Debian packages, no test data.
# The registry is ollama-seed's own ('ollama-seed serve') on 127.0.0.1, over a store holding a small
# synthetic model made here. Everything is removed at the end; KEEP=1 keeps the work directory.
#   SIZE_MIB=64 bash scripts/demo.sh
#   OLLAMA_SEED_DEMO_PYTHON=/path/to/python   # use an interpreter that already has ollama-seed (no install)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/ollama-seed-demo.XXXXXX")
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "== kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

python=${OLLAMA_SEED_DEMO_PYTHON:-}
if [ -z "$python" ]; then
  echo "== installing ollama-seed into $work/venv (the package and its runtime dependencies only)"
  python3 -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$repo"
  python="$work/venv/bin/python"
fi
seed() { "$python" -m ollama_seed "$@"; }

# A registry to pull from: a store with one synthetic model (random weights, a template, params),
# served read-only by ollama-seed itself. tests/support/model.py needs nothing but the standard library.
PYTHONPATH="$repo" "$python" -c '
import sys
from pathlib import Path
from tests.support.model import make_model
size = int(float(sys.argv[2]) * 1024 * 1024) + 12345
make_model(Path(sys.argv[1]) / "tmp", size_bytes=size).expected_store(
    Path(sys.argv[1]) / "store", "registry.ollama.ai", "library/demo", "latest")
' "$work/registry" "${SIZE_MIB:-64}"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" -m ollama_seed serve --models-dir "$work/registry/store" --host 127.0.0.1 --port "$port" --quiet \
  >"$work/serve.log" 2>&1 &
serve_pid=$!
"$python" -c '
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("the demo registry did not start: " + open(sys.argv[2]).read())
' "$port" "$work/serve.log"

name="127.0.0.1:$port/library/demo:latest"
models="$work/models"
echo "== ollama-seed pull --insecure $name (into $models)"
seed pull --insecure --models-dir "$models" --progress plain "$name"
echo "== again: nothing is downloaded twice"
seed pull --insecure --models-dir "$models" --progress none "$name"
echo "== ollama-seed list"
seed list --models-dir "$models"
echo "== ollama-seed verify"
seed verify --models-dir "$models"
echo "== what Ollama reads (OLLAMA_MODELS=$models ollama list would show the model)"
find "$models" -path '*/.ollama-seed' -prune -o -type f -print | sed "s|$models/||" | sort
