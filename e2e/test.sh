#!/usr/bin/env bash
# The whole idp-lab test suite, in one command.
#
# On a fresh Debian/Ubuntu machine, as root, it provisions its own test bed first
# (Docker Engine, a real kube-apiserver/controller-manager/kubectl 1.20.2 built from
# Debian's source, etcd, the stand-in k3s node image; ~40-50 minutes the first time,
# minutes afterwards thanks to the caches outside the clone). Elsewhere it runs what it
# can and lists loudly what it skipped and why. With CI=true nothing may be skipped:
# a missing dependency fails the run.
#
#   usage: e2e/test.sh            (README's test command; .ci/run runs it with CI=true)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
CI=${CI:-false}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idp-lab/target}
export IDP_LAB_TESTBED=${IDP_LAB_TESTBED:-$HOME/.cache/idp-lab-testbed}
export IDP_LAB_SKIP_LOG=${IDP_LAB_SKIP_LOG:-$(mktemp -t idp-lab-skips.XXXXXX)}
# Where tests save what a person may want to look at (the landing page's screenshot).
export IDP_LAB_ARTIFACTS=${IDP_LAB_ARTIFACTS:-$HOME/.cache/idp-lab/artifacts}
# The shared fixtures beside this checkout, found from here at run time (a test binary
# reused from the shared target dir must not look beside the clone that built it).
export IDP_LAB_SHARED=${IDP_LAB_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
: > "$IDP_LAB_SKIP_LOG"
LOG=$(mktemp -t idp-lab-test.XXXXXX)
mkdir -p "$IDP_LAB_TESTBED"

checks_passed=0
checks_failed=0
failures=()
say() { printf '\n==> %s\n' "$*"; }
skip() { printf 'SKIPPED: %s\t%s\n' "$1" "$2" | tee -a "$IDP_LAB_SKIP_LOG" >&2; }
pass() { checks_passed=$((checks_passed + 1)); printf 'ok: %s\n' "$1"; }
fail() { checks_failed=$((checks_failed + 1)); failures+=("$1"); printf 'FAILED: %s\n' "$1" >&2; }

# 1. The test bed.
say "test bed (${IDP_LAB_TESTBED})"
bed=false
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if e2e/testbed/install.sh; then bed=true; else fail "test bed: e2e/testbed/install.sh failed"; fi
else
  skip "test bed" "provisioning needs root on Debian/Ubuntu (apt-get); tests that need Docker or the control plane skip themselves"
fi

# 2. Build everything the tests use (debug; the release build comes later for the render comparison).
say "cargo build (CARGO_TARGET_DIR=${CARGO_TARGET_DIR})"
if ! cargo build --workspace --all-targets --locked; then
  fail "cargo build"
  echo "idp-lab: 0 passed, 1 failed"
  exit 1
fi

# Unused dependencies fail the run (cargo-machete reads every crate's sources).
say "unused dependencies (cargo machete)"
if ! command -v cargo-machete >/dev/null 2>&1; then
  cargo install --locked cargo-machete >/dev/null 2>&1 || true
fi
if command -v cargo-machete >/dev/null 2>&1; then
  if cargo machete; then pass "no unused dependencies"; else fail "cargo machete found unused dependencies"; fi
else
  skip "unused-dependency check" "cargo install cargo-machete failed (no crates.io?)"
fi

# 3. The stand-in k3s node image, built once here so parallel test processes find it.
if $bed; then
  say "stand-in k3s node image"
  if image=$(e2e/testbed/testnode-image.sh | tail -n 1) && [ -n "$image" ]; then
    export IDP_LAB_TESTNODE_IMAGE=$image
    pass "stand-in node image $image"
  else
    fail "stand-in node image: e2e/testbed/testnode-image.sh failed"
  fi
fi

# Everything Docker holds before the tests, to find what they leave behind (anonymous
# volumes of node containers carry no label).
docker_objects() {
  { docker ps -aq --no-trunc; docker network ls -q --no-trunc; docker volume ls -q; } 2>/dev/null | sort
}
before_docker=$(mktemp)
$bed && docker_objects > "$before_docker"

# 4. The test runner: cargo-nextest when present, cargo test otherwise.
say "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --locked 2>&1 | tee "$LOG"
  runner_status=${PIPESTATUS[0]}
  summary=$(grep -E '^ *Summary ' "$LOG" | tail -n 1)
  tests_passed=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")
  tests_failed=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")
else
  cargo test --workspace --no-fail-fast --locked 2>&1 | tee "$LOG"
  runner_status=${PIPESTATUS[0]}
  tests_passed=$(sed -nE 's/^test result: .* ([0-9]+) passed;.*/\1/p' "$LOG" | awk '{s+=$1} END {print s+0}')
  tests_failed=$(sed -nE 's/^test result: .* ([0-9]+) failed;.*/\1/p' "$LOG" | awk '{s+=$1} END {print s+0}')
fi
tests_passed=${tests_passed:-0}
tests_failed=${tests_failed:-0}
[ "$runner_status" = 0 ] || [ "$tests_failed" != 0 ] || tests_failed=1

# 5. Rendering is byte-identical between debug and release builds, and built-in kinds
#    pass a strict schema check (custom resources are checked by the server-side dry-run
#    test against the test-bed control plane).
say "render: debug vs release, schema check"
if cargo build --release -p idp-lab --locked; then
  venv=$IDP_LAB_TESTBED/venv
  if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    { python3 -m venv "$venv" && "$venv/bin/pip" install -q kubernetes-validate; } >/dev/null 2>&1 || true
  fi
  out=$(mktemp -d)
  for profile in $(target_bin=$CARGO_TARGET_DIR/release/idp-lab; "$target_bin" profiles list -o json | python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)))'); do
    rendered=true
    for build in debug release; do
      # The binary sees only its own configuration variables, as a user's shell would.
      if ! (cd "$out" && env -u IDP_LAB_TESTNODE_IMAGE -u IDP_LAB_SKIP_LOG IDP_LAB_HOME="$out/home" IDP_LAB_NETWORK_HTTPS_PORT=443 \
            "$CARGO_TARGET_DIR/$build/idp-lab" render --profile "$profile" > "$out/$profile.$build.yaml"); then
        fail "render --profile $profile ($build build) failed"
        rendered=false
      fi
    done
    $rendered || continue
    if cmp -s "$out/$profile.debug.yaml" "$out/$profile.release.yaml" && [ -s "$out/$profile.debug.yaml" ]; then
      pass "render --profile $profile: debug and release builds give identical bytes"
    else
      fail "render --profile $profile differs between debug and release builds"
    fi
    if [ -x "$venv/bin/kubernetes-validate" ]; then
      if "$venv/bin/kubernetes-validate" -k 1.33.0 --strict --quiet --no-warn "$out/$profile.debug.yaml"; then
        pass "render --profile $profile: built-in kinds pass kubernetes-validate 1.33 (strict)"
      else
        fail "render --profile $profile: kubernetes-validate"
      fi
    else
      skip "schema check of render --profile $profile" "kubernetes-validate could not be installed from PyPI into $venv"
    fi
  done
  rm -rf "$out"
else
  fail "cargo build --release -p idp-lab"
fi

# 6. Nothing left behind: containers, networks, volumes and processes the tests started.
say "leftovers"
if $bed && docker info >/dev/null 2>&1; then
  left=$(comm -13 "$before_docker" <(docker_objects))
  if [ -z "$left" ]; then
    pass "no containers, networks or volumes left behind by the tests"
  else
    fail "the tests left Docker objects behind: $(echo $left | head -c 300)"
  fi
fi
if pgrep -f "$IDP_LAB_TESTBED/bin/(etcd|kube-apiserver|kube-controller-manager)" >/dev/null 2>&1; then
  fail "control-plane processes left running: $(pgrep -af "$IDP_LAB_TESTBED/bin/" | head -3)"
else
  pass "no control-plane processes left running"
fi
if pgrep -f "$CARGO_TARGET_DIR/.*/idp-lab .*serve" >/dev/null 2>&1; then
  fail "lab daemons left running: $(pgrep -af "$CARGO_TARGET_DIR/.*/idp-lab .*serve" | head -3)"
else
  pass "no lab daemon (idp-lab serve) left running"
fi
[ -n "$(ls -A "$IDP_LAB_ARTIFACTS" 2>/dev/null)" ] && say "test artifacts (screenshots): $IDP_LAB_ARTIFACTS"

# 7. What was skipped, loudly.
skipped=$(sort -u "$IDP_LAB_SKIP_LOG" | grep -c . || true)
if [ "$skipped" != 0 ]; then
  printf '\n!!! %s SKIPPED — these were NOT verified on this machine:\n' "$skipped" >&2
  sort -u "$IDP_LAB_SKIP_LOG" | sed 's/^/!!!   /' >&2
  if [ "$CI" = true ]; then fail "CI=true, where nothing may be skipped"; fi
fi
for f in "${failures[@]}"; do printf 'FAILED: %s\n' "$f" >&2; done
total_passed=$((tests_passed + checks_passed))
total_failed=$((tests_failed + checks_failed))
echo
echo "idp-lab: ${total_passed} passed, ${total_failed} failed, ${skipped} skipped"
[ "$total_failed" = 0 ]
