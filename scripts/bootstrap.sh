#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/demo.sh: a project virtualenv with wfsched and
# its dev dependencies, and the Go-built control plane (cached outside the repo).
#   source scripts/bootstrap.sh [COMPONENT ...]    (no component: all of them)
# A sourced script sees its caller's arguments when it is given none: callers pass the
# components they need, or clear their own arguments (`set --`) first.
# With WFSCHED_DRY_RUN=1 nothing is installed or built: it says what it would do, and the
# component names are checked (`build.sh --dry-run`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${WFSCHED_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
dry_run="${WFSCHED_DRY_RUN:-0}"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "[bootstrap] creating virtualenv $venv" >&2
  [[ "$dry_run" == 1 ]] || "$python" -m venv "$venv"
fi
stamp="$venv/.wfsched-installed"
if [[ ! -f "$stamp" || "$root/pyproject.toml" -nt "$stamp" ]]; then
  echo "[bootstrap] installing wfsched and its dev dependencies" >&2
  if [[ "$dry_run" != 1 ]]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$root[dev]"
    touch "$stamp"
  fi
fi
export PATH="$venv/bin:$PATH"

if [[ "$dry_run" == 1 ]]; then
  echo "[bootstrap] control plane (dry run): build.sh ${*:-(all components)}" >&2
  bash "$root/scheduler/devtools/assets/build.sh" --dry-run "$@"
else
  echo "[bootstrap] control plane: building or reusing the cache (first build takes a while)" >&2
  bash "$root/scheduler/devtools/assets/build.sh" "$@"
fi
