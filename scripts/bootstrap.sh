#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/demo.sh. Sourcing it defines three steps and runs
# neither; callers run the ones they need, when they need them:
#   source scripts/bootstrap.sh
#   bootstrap_python                         a project virtualenv with wfsched and its dev
#                                            dependencies, put first on PATH
#   bootstrap_control_plane [COMPONENT ...]  the Go-built control plane, cached outside the
#                                            repo (no component: all of them)
#   bootstrap_system_packages                headless Chromium (the report page test) and rsync
#                                            (Snakemake's file storage), apt-get as root
# With WFSCHED_DRY_RUN=1 nothing is installed or built: each step says what it would do, and the
# component names are checked (`build.sh --dry-run`). Each step returns its failure's status
# itself, so it stops at the first failure even where the caller's `set -e` does not apply.
set -euo pipefail
bootstrap_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bootstrap_python() {
  local venv="${WFSCHED_VENV:-$bootstrap_root/.venv}"
  local python="${PYTHON:-python3}"
  local dry_run="${WFSCHED_DRY_RUN:-0}"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "[bootstrap] creating virtualenv $venv" >&2
    [[ "$dry_run" == 1 ]] || "$python" -m venv "$venv" || return
  fi
  local stamp="$venv/.wfsched-installed"
  if [[ ! -f "$stamp" || "$bootstrap_root/pyproject.toml" -nt "$stamp" ]]; then
    echo "[bootstrap] installing wfsched and its dev dependencies" >&2
    if [[ "$dry_run" != 1 ]]; then
      "$venv/bin/python" -m pip install --quiet --upgrade pip || return
      # --no-compile halves a clean install: modules get their bytecode when first imported.
      "$venv/bin/python" -m pip install --quiet --no-compile -e "$bootstrap_root[dev]" || return
      touch "$stamp"
    fi
  fi
  export PATH="$venv/bin:$PATH"
}

bootstrap_control_plane() {
  local build="$bootstrap_root/scheduler/devtools/assets/build.sh"
  if [[ "${WFSCHED_DRY_RUN:-0}" == 1 ]]; then
    echo "[bootstrap] control plane (dry run): build.sh ${*:-(all components)}" >&2
    bash "$build" --dry-run "$@"
  else
    echo "[bootstrap] control plane: building or reusing the cache (first build takes a while)" >&2
    bash "$build" "$@"
  fi
}

bootstrap_system_packages() {
  # From Debian's packages: headless Chromium renders the replay report page in its test, and
  # Snakemake's file storage plugin copies with rsync in the Snakemake test.
  local missing=() package
  for package in chromium rsync; do
    command -v "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ "${WFSCHED_DRY_RUN:-0}" == 1 ]]; then
    echo "[bootstrap] would install ${missing[*]} (apt-get)" >&2; return 0
  fi
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] ${missing[*]} missing and not installable here: the tests that need them skip" >&2
    return 0
  fi
  echo "[bootstrap] installing ${missing[*]} (apt-get)" >&2
  apt-get install -y "${missing[@]}" >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
}
