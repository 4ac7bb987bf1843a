#!/usr/bin/env bash
# Install everything and run every check, in two stages; the first failure stops the run.
#   stage 1, fast (no control plane): install the Python dependencies, then ruff check, ruff
#     format --check, mypy, lint-imports (the import contracts in pyproject.toml) and the unit
#     tests (tests/unit, 20 s at most per test);
#   stage 2: build (or reuse) the control plane, etcd + kube-apiserver + KWOK built from Go
#     modules, and run the other tiers (tests/integration, tests/chart, tests/reliability).
#
#   bash scripts/test.sh [PYTEST ARGS ...]            e.g. -m "not slow", tests/unit, -k NAME
#   bash scripts/test.sh --dry-run [PYTEST ARGS ...]  install, build and run nothing: check the
#       component names the build would get, say what each stage would run, and let pytest
#       collect (only) the tests the arguments select in each stage
#   bash scripts/test.sh --help
#
# The arguments go to pytest in both stages: stage 1 runs the tests they select under tests/unit,
# stage 2 the others. A stage left without tests runs no pytest (stage 2 then builds nothing);
# arguments that select no test at all fail the run. Each step and stage prints its time.
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
dry_run="${WFSCHED_DRY_RUN:-0}"

# Which tests each stage keeps of those the arguments select. --ignore keeps pytest from even
# importing the other tiers when it searches the test paths; --deselect (a node-id prefix) drops
# them when the arguments name them explicitly, which --ignore does not.
unit_tier=tests/unit
stage1_only=()
stage2_only=(--ignore="$unit_tier" --deselect="$unit_tier/")
for tier in tests/*/; do
  tier=${tier%/}
  [[ "$tier" == "$unit_tier" ]] || stage1_only+=(--ignore="$tier" --deselect="$tier/")
done

say() { echo "[test] $*" >&2; }

# Run a command, print how long it took and return its status.
timed() {
  local name=$1 started=$SECONDS status=0
  shift
  say "$name"
  "$@" || status=$?
  say "$name: $((SECONDS - started)) s"
  return "$status"
}

# pytest's status for "collected no test" (here: the stage has none of the selected tests).
readonly NO_TESTS=5

# Set reach_unit and reach_other: whether the arguments name tests of each stage's tiers (no
# arguments: the default test paths, all tiers). pytest parses the arguments and collects
# nothing, so a stage they cannot reach costs no collection; a bad argument fails here.
find_tiers() {
  reach_unit=1
  reach_other=1
  [[ ${#pytest_args[@]} -gt 0 ]] || return 0
  local tiers
  tiers=$(python scripts/pytest_tiers.py "${pytest_args[@]}") || return
  [[ "$tiers" == *unit* ]] || reach_unit=0
  [[ "$tiers" == *other* ]] || reach_other=0
}

# Collect the selected tests of one stage, print them and return pytest's status.
collect() {
  local status=0
  python -m pytest --collect-only -q -p no:cacheprovider "${pytest_args[@]}" "$@" || status=$?
  return "$status"
}

source "$root/scripts/bootstrap.sh"

if [[ "$dry_run" == 1 ]]; then
  bootstrap_python
  shown=""
  [[ ${#pytest_args[@]} -eq 0 ]] || printf -v shown ' %q' "${pytest_args[@]}"
  say "dry run: stage 1 would run ruff check ., ruff format --check ., mypy, lint-imports," \
    "python -m pytest$shown (the tests under $unit_tier)"
  if ! python -c 'import pytest' 2>/dev/null; then
    say "dry run: pytest arguments not checked (no virtualenv with pytest yet)"
    bootstrap_control_plane
    exit 0
  fi
  find_tiers
  unit_status=$NO_TESTS
  if [[ "$reach_unit" == 1 ]]; then
    unit_status=0
    collect "${stage1_only[@]}" || unit_status=$?
  fi
  other_status=$NO_TESTS
  if [[ "$reach_other" == 1 ]]; then
    other_status=0
    collect "${stage2_only[@]}" || other_status=$?
  fi
  for status in "$unit_status" "$other_status"; do
    [[ "$status" == 0 || "$status" == "$NO_TESTS" ]] || exit "$status"
  done
  if [[ "$other_status" == "$NO_TESTS" ]]; then
    say "dry run: stage 2 would build nothing and run no test (none selected outside $unit_tier)"
  else
    say "dry run: stage 2 would build the control plane and run python -m pytest$shown" \
      "(the tests outside $unit_tier)"
    bootstrap_control_plane
  fi
  if [[ "$unit_status" == "$NO_TESTS" && "$other_status" == "$NO_TESTS" ]]; then
    say "dry run: the arguments select no test"
    exit "$NO_TESTS"
  fi
  exit 0
fi

run_started=$SECONDS
stage_started=$SECONDS
stage=1
trap 'say "stage $stage failed after $((SECONDS - stage_started)) s"' ERR

say "stage 1: Python dependencies, lint, types, import contracts, unit tests"
timed "install the Python dependencies" bootstrap_python
find_tiers
timed "ruff" ruff check .
timed "ruff format" ruff format --check .
timed "mypy" mypy
timed "import contracts" lint-imports
unit_status=$NO_TESTS
if [[ "$reach_unit" == 1 ]]; then
  unit_status=0
  timed "unit tests" python -m pytest "${pytest_args[@]}" "${stage1_only[@]}" || unit_status=$?
fi
if [[ "$unit_status" != 0 && "$unit_status" != "$NO_TESTS" ]]; then
  say "stage 1 failed after $((SECONDS - stage_started)) s: the unit tests"
  exit "$unit_status"
fi
[[ "$unit_status" == 0 ]] || say "no unit test selected"
say "stage 1 passed in $((SECONDS - stage_started)) s"

stage_started=$SECONDS
stage=2
say "stage 2: control plane, integration, chart and reliability tests"
other_status=$NO_TESTS
if [[ "$reach_other" == 1 ]]; then
  other_status=0
  collect "${stage2_only[@]}" >/dev/null || other_status=$?
fi
if [[ "$other_status" == "$NO_TESTS" ]]; then
  say "stage 2: no test selected outside $unit_tier; nothing to build"
  if [[ "$unit_status" == "$NO_TESTS" ]]; then
    say "the arguments select no test: failing (pytest status $NO_TESTS)"
    exit "$NO_TESTS"
  fi
  say "all stages passed in $((SECONDS - run_started)) s"
  exit 0
fi
if [[ "$other_status" != 0 ]]; then
  collect "${stage2_only[@]}" >&2 || true  # show the collection error
  exit "$other_status"
fi
timed "control plane" bootstrap_control_plane
# The optional components (see build.sh), only when tests that start them are selected.
selected=$(collect "${stage2_only[@]}" 2>/dev/null || true)
optional=()
grep -qE 'integration/test_(controller_manager|snakemake|kueue)' <<<"$selected" &&
  optional+=(kube-controller-manager)
grep -q 'integration/test_kueue' <<<"$selected" && optional+=(kueue)
[[ ${#optional[@]} -eq 0 ]] ||
  timed "optional control-plane components" bootstrap_control_plane "${optional[@]}"
timed "system packages (chromium, rsync)" bootstrap_system_packages
timed "integration, chart and reliability tests" \
  python -m pytest "${pytest_args[@]}" "${stage2_only[@]}"
say "stage 2 passed in $((SECONDS - stage_started)) s"
say "all stages passed in $((SECONDS - run_started)) s"
