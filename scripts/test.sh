#!/usr/bin/env bash
# Install everything and run every check: lint, types, unit tests and the integration tests
# against a real kube-apiserver + etcd + KWOK built from Go modules.
#   bash scripts/test.sh [PYTEST ARGS ...]            e.g. -m "not slow", tests/unit, -k NAME
#   bash scripts/test.sh --dry-run [PYTEST ARGS ...]  install, build and run nothing: check the
#       component names the build would get, say what it would build, and let pytest collect
#       (only) the tests the arguments select
#   bash scripts/test.sh --help
# The arguments go to pytest only; the control-plane build always gets every component.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
    ;;
  --dry-run)
    export WFSCHED_DRY_RUN=1
    shift
    ;;
esac
pytest_args=("$@")
set --  # bootstrap.sh is sourced: without this it would take the pytest arguments as components
source "$root/scripts/bootstrap.sh"

if [[ "${WFSCHED_DRY_RUN:-0}" == 1 ]]; then
  shown=""
  [[ ${#pytest_args[@]} -eq 0 ]] || printf -v shown ' %q' "${pytest_args[@]}"
  echo "[test] dry run: would run ruff check ., ruff format --check ., mypy," \
    "python -m pytest$shown" >&2
  if ! python -c 'import pytest' 2>/dev/null; then
    echo "[test] dry run: pytest arguments not checked (no virtualenv with pytest yet)" >&2
    exit 0
  fi
  exec python -m pytest --collect-only -q -p no:cacheprovider "${pytest_args[@]}"
fi

echo "[test] ruff" >&2
ruff check .
ruff format --check .
echo "[test] mypy" >&2
mypy
echo "[test] pytest" >&2
status=0
python -m pytest "${pytest_args[@]}" || status=$?
# Exit status 5 means pytest collected no test: treat it as a failure, never as success.
exit "$status"
