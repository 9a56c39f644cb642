# What the https and dns benchmarks share: messages, the positive-integer settings, the
# processes they start (stopped, with their children, on any exit), and installing
# missing Debian packages with their services held back. Sourced after BENCH is set.

die() { printf '\nbench %s: FAILED: %s\n' "$BENCH" "$*" >&2; exit 1; }
log() { printf '%s\n' "$*" >&2; }

# require_positive VAR...: each must be a positive integer.
require_positive() {
  local v
  for v in "$@"; do
    case ${!v} in '' | *[!0-9]* | 0) die "$v must be a positive integer, not '${!v}'" ;; esac
  done
}

TMP=
PIDS=()
POLICY_RC=
cleanup() {
  local rc=$?
  set +e
  # The processes started, and their children (nginx's workers), which a master killed
  # with SIGKILL would leave behind.
  local all=() pid
  for pid in "${PIDS[@]}"; do all+=("$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null)); done
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${all[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  [ -n "$POLICY_RC" ] && rm -f /usr/sbin/policy-rc.d
  if [ -n "$TMP" ]; then
    if [ "${BENCH_KEEP:-}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# apt_install PKG...: as root on Debian/Ubuntu, with a policy-rc.d that keeps their
# services from starting (removed afterwards); elsewhere a failure naming them.
apt_install() {
  [ $# = 0 ] && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
    die "missing: $* (install them, e.g. apt-get install $*; this script does it when run as root on Debian/Ubuntu)"
  log "==> apt-get install $* (services held back by a policy-rc.d)"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    POLICY_RC=1
  fi
  apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
  if [ -n "$POLICY_RC" ]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC=; fi
}
