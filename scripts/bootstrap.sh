#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/demo.sh: a project virtualenv with wfsched and
# its dev dependencies, and the Go-built control plane (cached outside the repo).
#   source scripts/bootstrap.sh [COMPONENT ...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${WFSCHED_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "[bootstrap] creating virtualenv $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.wfsched-installed"
if [[ ! -f "$stamp" || "$root/pyproject.toml" -nt "$stamp" ]]; then
  echo "[bootstrap] installing wfsched and its dev dependencies" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[dev]"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"

echo "[bootstrap] control plane: building or reusing the cache (first build takes a while)" >&2
bash "$root/scheduler/devcluster_assets/build.sh" "$@"
