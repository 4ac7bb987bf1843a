#!/usr/bin/env bash
# Install wfsched, build (or reuse) the local control plane, and run `wfsched demo`: the real
# nf-core nanoseq run replayed under wfsched and under kube-scheduler on fake nodes, side by side.
# Needs no existing cluster.
#   bash scripts/demo.sh [DEMO ARGS ...]            (see `wfsched demo --help`)
#   bash scripts/demo.sh --dry-run [DEMO ARGS ...]  install, build and start nothing: check the
#       component names, say what would be built, and check the demo's arguments
#   bash scripts/demo.sh --help
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
demo_args=("$@")
source "$root/scripts/bootstrap.sh"
bootstrap_python
bootstrap_control_plane etcd kubernetes kwok metrics-server
if [[ "${WFSCHED_DRY_RUN:-0}" == 1 ]]; then
  if ! python -c 'import scheduler' 2>/dev/null; then
    echo "[demo] dry run: demo arguments not checked (wfsched is not installed yet)" >&2
    exit 0
  fi
  exec python -m scheduler demo --check "${demo_args[@]}"
fi
exec python -m scheduler demo "${demo_args[@]}"
