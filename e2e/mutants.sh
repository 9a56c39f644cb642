#!/usr/bin/env bash
# Mutation testing of the code whose tests must guard it (not part of .ci/run: it takes
# an hour or more on 2 cores). It mutates idp-core's config and settings modules and the
# host plane, runs their tests against each mutant, and prints how many were killed.
# The goal is at least 90 % of the viable mutants; survivors are listed in
# <out>/mutants.out/missed.txt.
#
#   usage: e2e/mutants.sh [OUT_DIR]       (default: ${TMPDIR:-/tmp}/idp-lab-mutants)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
out=${1:-${TMPDIR:-/tmp}/idp-lab-mutants}
mkdir -p "$out"
command -v cargo-mutants >/dev/null 2>&1 || cargo install --locked cargo-mutants || exit 2
jobs=${MUTANTS_JOBS:-2}
# Each mutant builds in cargo-mutants' own copy of the tree; a shared CARGO_TARGET_DIR
# would let mutated builds land where the developer's own builds and tests look.
unset CARGO_TARGET_DIR
status=0
run() {
  local name=$1; shift
  # cargo mutants exits non-zero when any mutant survives; the goal is the share.
  cargo mutants --no-shuffle -j "$jobs" --timeout 120 --output "$out/$name" "$@"
  local dir="$out/$name/mutants.out"
  local caught missed timeout unviable
  caught=$(wc -l < "$dir/caught.txt"); missed=$(wc -l < "$dir/missed.txt")
  timeout=$(wc -l < "$dir/timeout.txt"); unviable=$(wc -l < "$dir/unviable.txt")
  local viable=$((caught + missed + timeout))
  local pct=0
  [ "$viable" -gt 0 ] && pct=$(( (100 * (caught + timeout)) / viable ))
  echo "mutants $name: caught=$caught timeout=$timeout missed=$missed unviable=$unviable killed=${pct}%"
  [ "$pct" -ge 90 ] || status=1
}
run core-config-settings -p idp-core --file 'appliance/idp-core/src/config/*.rs' --file appliance/idp-core/src/settings.rs
run host -p idp-host
exit $status
