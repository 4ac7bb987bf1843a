#!/usr/bin/env bash
# Install everything and run every check: lint, types, unit tests and the integration tests
# against a real kube-apiserver + etcd + KWOK built from Go modules.
#   bash scripts/test.sh [PYTEST ARGS ...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source "$root/scripts/bootstrap.sh"

echo "[test] ruff" >&2
ruff check .
ruff format --check .
echo "[test] mypy" >&2
mypy
echo "[test] pytest" >&2
status=0
python -m pytest "$@" || status=$?
# Exit status 5 means pytest collected no test: treat it as a failure, never as success.
exit "$status"
