#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-scheduler, KWOK, metrics-server,
# helm, promtool, the Prometheus server, the Prometheus Operator's ServiceMonitor CRD; when named,
# kube-controller-manager and Kueue) from published Go modules into a cache outside the
# repository.
#
#   scheduler/devtools/assets/build.sh [COMPONENT ...]            (default: all components
#                                                                    but the optional ones)
#   scheduler/devtools/assets/build.sh --dry-run [COMPONENT ...]  (check names, say what would
#                                                                    be built; build nothing)
#   scheduler/devtools/assets/build.sh --print-dir COMPONENT
#   scheduler/devtools/assets/build.sh --help
#
# Cache layout: ${WFSCHED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wfsched}/controlplane/
#   <component>/<version>-<go version>-<recipe hash>/{bin/,manifest.json}
# The recipe hash covers the component's version and its build function, so changing either
# rebuilds that component only.
# A finished entry is moved into place atomically; a lock keeps two runs from building the
# same component at once. A cached component costs nothing on the second run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
fi

# shellcheck source=versions.env
source "$here/versions.env"

export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -trimpath"

cache_root="${WFSCHED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wfsched}/controlplane"
go_version=$(go env GOVERSION)
all_components=(etcd kubernetes kwok metrics-server helm promtool prometheus prometheus-operator-crds)
# Built only when named (not by a bare build.sh): only the tests that start them need them.
optional_components=(kube-controller-manager kueue)

component_version() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kubernetes) echo "$K8S_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    metrics-server) echo "$METRICS_SERVER_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    promtool) echo "$PROMETHEUS_VERSION" ;;
    prometheus) echo "$PROMETHEUS_VERSION" ;;
    prometheus-operator-crds) echo "$PROMETHEUS_OPERATOR_VERSION" ;;
    kube-controller-manager) echo "$K8S_VERSION" ;;
    kueue) echo "$KUEUE_VERSION" ;;
    *) echo "unknown component: $1 (known: ${all_components[*]} ${optional_components[*]})" >&2
       return 2 ;;
  esac
}

recipe_hash() {
  { component_version "$1"; declare -f "build_${1//-/_}"; } | sha256sum | cut -c1-12
}

component_dir() {
  echo "$cache_root/$1/$(component_version "$1")-$go_version-$(recipe_hash "$1")"
}

scratch_dirs=()
cleanup() { [[ ${#scratch_dirs[@]} -eq 0 ]] || rm -rf "${scratch_dirs[@]}"; }
trap cleanup EXIT

# Set REPLY to a fresh scratch directory that is removed when the script exits.
new_scratch() {
  REPLY=$(mktemp -d)
  scratch_dirs+=("$REPLY")
}

log() { printf '[controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- per-component recipes: each writes binaries into "$1" -------------------------------

build_etcd() {
  local out=$1 work
  new_scratch; work=$REPLY
  # etcd's server module has replaces to its siblings, but its require lines already name the
  # published siblings at the same tag, so a wrapper module needs no replace of its own.
  cat > "$work/go.mod" <<MOD
module wfsched.local/etcd-build

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$work/tools.go"
  (cd "$work" && go mod tidy && go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

build_kubernetes() {
  local out=$1 work upstream_mod minor staging stamp
  new_scratch; work=$REPLY
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  staging="v0.${K8S_VERSION#v1.}"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
  # directories; a dependent module must replace them with their published v0.Y.Z tags. The
  # list is read from the tag's own go.mod so new staging modules are picked up.
  upstream_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  {
    printf 'module wfsched.local/k8s-build\n\ngo 1.26.0\n\n'
    grep -E '^godebug ' "$upstream_mod" || true
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    sed -n -E "s#^[[:space:]]*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\t\1 => \1 $staging#p" "$upstream_mod"
    printf ')\n'
  } > "$work/go.mod"
  if ! grep -q "k8s.io/apiserver => k8s.io/apiserver $staging" "$work/go.mod"; then
    log "derived replace list looks wrong:"; cat "$work/go.mod" >&2; return 1
  fi
  log "kubernetes: $(grep -c ' => ' "$work/go.mod") staging modules replaced with $staging"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler"\n)\n' > "$work/tools.go"
  (cd "$work" && go mod tidy)
  stamp=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    stamp+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$work" && go build -ldflags "-s -w$stamp" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler)
}

build_kwok() {
  GOBIN="$1" go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # KWOK v0.8.0 ships no default stages to the standalone controller; keep the upstream stage
  # files of this exact version next to the binary for the launcher to assemble its config.
  local src
  src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize"
  mkdir -p "$1/../kustomize"
  cp -r "$src/." "$1/../kustomize/"
  chmod -R u+w "$1/../kustomize"
}

build_metrics_server() {
  GOBIN="$1" go install -ldflags "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
}

build_helm() {
  local minor
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  # Plain go install skips helm's Makefile stamps; without them helm assumes Kubernetes 1.20.
  GOBIN="$1" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_promtool() {
  local out=$1 work upstream_mod release
  new_scratch; work=$REPLY
  # The Go module v0.3MM.P is Prometheus release 3.MM.P.
  release=${PROMETHEUS_VERSION#v0.}; release="${release:0:1}.${release:1}"
  # Prometheus' go.mod carries replace and exclude directives, so `go install` refuses it; a
  # wrapper module repeats them, read from the tag's own go.mod.
  upstream_mod=$(go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  {
    printf 'module wfsched.local/promtool-build\n\ngo 1.26.0\n\n'
    printf 'require github.com/prometheus/prometheus %s\n\n' "$PROMETHEUS_VERSION"
    python3 - "$upstream_mod" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for match in re.finditer(r"^(replace|exclude)\s+(\([^)]*\)|[^\n]+)", text, re.M):
    print(match.group(0))
PY
  } > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/prometheus/prometheus/cmd/promtool"\n' > "$work/tools.go"
  (cd "$work" && go mod tidy && go build \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
    -o "$out/promtool" github.com/prometheus/prometheus/cmd/promtool)
}

build_prometheus() {
  local out=$1 work upstream_mod release
  new_scratch; work=$REPLY
  # The Prometheus server from the same module and tag as promtool (same wrapper module). No
  # web UI assets are embedded (the API serves queries without them), and remove_all_sd keeps
  # only static, file and HTTP discovery: the tests scrape a known address.
  release=${PROMETHEUS_VERSION#v0.}; release="${release:0:1}.${release:1}"
  upstream_mod=$(go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  {
    printf 'module wfsched.local/prometheus-build\n\ngo 1.26.0\n\n'
    printf 'require github.com/prometheus/prometheus %s\n\n' "$PROMETHEUS_VERSION"
    python3 - "$upstream_mod" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for match in re.finditer(r"^(replace|exclude)\s+(\([^)]*\)|[^\n]+)", text, re.M):
    print(match.group(0))
PY
  } > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/prometheus/prometheus/cmd/prometheus"\n' > "$work/tools.go"
  (cd "$work" && go mod tidy && go build -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
    -o "$out/prometheus" github.com/prometheus/prometheus/cmd/prometheus)
}

build_prometheus_operator_crds() {
  local out=$1 module_dir
  # Nothing to compile: the operator's Go module ships its generated CRD manifests, so the
  # module proxy serves the exact CRD of this release. Only the ServiceMonitor CRD is kept (the
  # chart renders no other operator kind); it lands in crds/ beside the (empty) bin/.
  module_dir=$(go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$out/../crds"
  cp "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
    "$out/../crds/"
  chmod -R u+w "$out/../crds"
}

build_kube_controller_manager() {
  local out=$1 work upstream_mod minor staging stamp
  new_scratch; work=$REPLY
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  staging="v0.${K8S_VERSION#v1.}"
  # The same wrapper module as build_kubernetes (kept separate so that the apiserver and
  # scheduler entry stays cached): staging modules replaced with their published v0.Y.Z tags.
  upstream_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  {
    printf 'module wfsched.local/kcm-build\n\ngo 1.26.0\n\n'
    grep -E '^godebug ' "$upstream_mod" || true
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    sed -n -E "s#^[[:space:]]*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\t\1 => \1 $staging#p" "$upstream_mod"
    printf ')\n'
  } > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-controller-manager"\n' > "$work/tools.go"
  (cd "$work" && go mod tidy)
  stamp=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    stamp+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$work" && go build -ldflags "-s -w$stamp" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-controller-manager)
}

build_kueue() {
  local out=$1 module_dir
  # Kueue's go.mod has no replace directives, so its manager installs straight from the module.
  GOBIN="$out" go install \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
    "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
  # The CRDs and the webhook configurations of this exact release, from the same module.
  module_dir=$(go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$out/../crds" "$out/../webhook"
  cp "$module_dir"/config/components/crd/bases/*.yaml "$out/../crds/"
  cp "$module_dir/config/components/webhook/manifests.yaml" "$out/../webhook/"
  chmod -R u+w "$out/../crds" "$out/../webhook"
}

# --- driver ---------------------------------------------------------------------------------

build_component() {
  local name=$1 final tmp start secs
  final=$(component_dir "$name")
  if [[ -f "$final/manifest.json" ]]; then
    log "$name $(component_version "$name"): cached at $final"
    return 0
  fi
  mkdir -p "$(dirname "$final")"
  exec {lock_fd}>"$(dirname "$final")/.lock"
  flock "$lock_fd"
  if [[ -f "$final/manifest.json" ]]; then
    log "$name: built by another run meanwhile"; exec {lock_fd}>&-; return 0
  fi
  tmp=$(mktemp -d "$(dirname "$final")/.build-XXXXXX")
  mkdir -p "$tmp/bin"
  log "$name $(component_version "$name"): building (go $go_version) ..."
  start=$(date +%s)
  "build_${name//-/_}" "$tmp/bin"
  secs=$(( $(date +%s) - start ))
  python3 - "$tmp" "$name" "$(component_version "$name")" "$go_version" "$(recipe_hash "$name")" "$secs" <<'PY'
import hashlib, json, pathlib, sys
root, name, version, go, recipe, secs = sys.argv[1:]
bins = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(pathlib.Path(root, "bin").iterdir())}
manifest = {"component": name, "version": version, "go": go, "recipe": recipe,
            "build_seconds": int(secs), "binaries": bins}
pathlib.Path(root, "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
PY
  rm -rf "$final"
  mv "$tmp" "$final"
  exec {lock_fd}>&-
  log "$name: built in ${secs}s -> $final"
}

if [[ "${1:-}" == "--print-dir" ]]; then
  component_dir "${2:?component name}"
  exit 0
fi

dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=true
  shift
fi

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=("${all_components[@]}")
for c in "${components[@]}"; do
  component_version "$c" >/dev/null  # an unknown name fails here, before anything is built
done
if $dry_run; then
  for c in "${components[@]}"; do
    if [[ -f "$(component_dir "$c")/manifest.json" ]]; then
      echo "$c $(component_version "$c"): cached at $(component_dir "$c")"
    else
      echo "$c $(component_version "$c"): would build into $(component_dir "$c")"
    fi
  done
  exit 0
fi
total_start=$(date +%s)
for c in "${components[@]}"; do
  build_component "$c"
done
log "all requested components ready in $(( $(date +%s) - total_start ))s"
