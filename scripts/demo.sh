#!/usr/bin/env bash
# Install ollama-seed and run its main job offline: pull a model from a registry into an
# Ollama models directory. With no internet, a Docker Distribution registry is started on
# 127.0.0.1 and filled with a small synthetic Ollama-style model first.
#   MODELS=/tmp/ollama-seed-demo/models SIZE_MIB=64 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
work="${WORK:-$(mktemp -d /tmp/ollama-seed-demo.XXXXXX)}"
models="${MODELS:-$work/models}"
size=$(( ${SIZE_MIB:-64} * 1024 * 1024 + 12345 ))

python3 -m tests.support.registry start --workdir "$work/registry" > "$work/registry.url" &
reg_pid=$!
trap 'kill "$reg_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$work/registry.url" ] && break; sleep 0.1; done
url=$(head -n1 "$work/registry.url")
host=${url#http://}
python3 -m tests.support.registry seed "$url" library/demo latest --size-bytes "$size" --workdir "$work/seed" > /dev/null

echo "== ollama-seed pull --insecure $host/library/demo:latest (into $models)"
ollama-seed pull --insecure --models-dir "$models" "$host/library/demo:latest"
echo "== again: nothing is downloaded twice"
ollama-seed pull --insecure --models-dir "$models" --progress none "$host/library/demo:latest"
echo "== ollama-seed list"
ollama-seed list --models-dir "$models"
echo "== ollama-seed verify"
ollama-seed verify --models-dir "$models"
find "$models" -path '*/.ollama-seed' -prune -o -type f -print
