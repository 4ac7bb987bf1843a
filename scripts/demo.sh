#!/usr/bin/env bash
# Install wfsched, build (or reuse) the local control plane, start it with fake nodes and show
# them, then stop it again. Needs no existing cluster.
#   bash scripts/demo.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source "$root/scripts/bootstrap.sh" etcd kubernetes kwok metrics-server
exec python -m scheduler demo "$@"
