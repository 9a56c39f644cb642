#!/usr/bin/env bash
# The real-image suite: the flows the test bed checks with the stand-in node, run against a
# real rancher/k3s image. Needs that image (present, or pulled with --pull), a Docker daemon
# that allows privileged containers and, for --pull, network access. It is not part of
# e2e/test.sh: where any of that is missing it says so loudly and exits 0, and what it
# covers is then UNVERIFIED on that machine (the project's own machines and CI are such).
#
#   usage: e2e/real/run.sh [--pull]        IDP_LAB_REAL_K3S_IMAGE overrides the image
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idp-lab/target}
pinned=$(grep -oE 'K3S_IMAGE: &str = "[^"]+"' appliance/idp-core/src/config/mod.rs | cut -d'"' -f2)
export IDP_LAB_REAL_K3S_IMAGE=${IDP_LAB_REAL_K3S_IMAGE:-$pinned}

unverified() {
  printf '\n!!! SKIPPED: the real-image suite did not run: %s\n' "$1" >&2
  printf '!!! Real k3s node provisioning is UNVERIFIED on this machine.\n\n' >&2
  exit 0
}

docker info >/dev/null 2>&1 || unverified "no Docker daemon answers"
if ! docker image inspect "$IDP_LAB_REAL_K3S_IMAGE" >/dev/null 2>&1; then
  if [ "${1:-}" = --pull ]; then
    docker pull "$IDP_LAB_REAL_K3S_IMAGE" || unverified "docker pull $IDP_LAB_REAL_K3S_IMAGE failed (no registry access?)"
  else
    unverified "image $IDP_LAB_REAL_K3S_IMAGE is not present (load it, or run with --pull where a registry is reachable)"
  fi
fi
docker run --rm --privileged --entrypoint /bin/k3s "$IDP_LAB_REAL_K3S_IMAGE" --version >/dev/null 2>&1 \
  || unverified "this Docker daemon refuses privileged containers, which real k3s nodes need"

echo "real-image suite: $IDP_LAB_REAL_K3S_IMAGE"
status=0
cargo test -p idp-test --test smoke real_k3s -- --ignored --nocapture || status=1
# The lab lifecycle (up --no-platform, re-up, recreate, stop/start, images import, down),
# privileged, on the real image.
cargo test -p idp-lab --test lab real_k3s -- --ignored --nocapture || status=1
# Offline up from a real bundle (made on a connected machine with
# `idp-lab bundle create --profile minimal --out FILE`), privileged, on the real image.
if [ -n "${IDP_LAB_REAL_BUNDLE:-}" ] && [ -f "$IDP_LAB_REAL_BUNDLE" ]; then
  cargo test -p idp-lab --test offline real_k3s -- --ignored --nocapture || status=1
else
  printf '\n!!! SKIPPED: offline up on real k3s: IDP_LAB_REAL_BUNDLE names no bundle; it is UNVERIFIED here.\n\n' >&2
fi
exit $status
