#!/usr/bin/env bash
# Benchmark: the watchdog's drift detection in the lab daemon (the release binary's
# `idp-lab serve`) on the test bed's real kube-apiserver 1.20, with 1000 managed objects in
# one component and a scripted stream of edits by another field manager.
#
# NOT part of e2e/test.sh or .ci/run: it measures. It fails loudly when the set-up does
# not work (the API server, `apply`, the daemon, an edit refused); it exits 1 after its
# last line when the product got something wrong (an edited object not back to what
# idp-lab set, a drift that matches no edit, a heal that failed).
#
#   usage: e2e/bench/watchdog.sh
#   env:   OBJECTS=1000          managed objects: the Namespace, SECRETS Secrets, the rest ConfigMaps
#          SECRETS=100           of them Secrets (never edited: they are watched and cached)
#          PAYLOAD_BYTES=1024    each ConfigMap's untouched `config.yaml` (Secrets: half, base64)
#          EDITS=300             edits, each a PATCH of one ConfigMap's `data.value`
#          EDIT_INTERVAL_MS=100  one edit every so many ms (a fixed schedule from the first)
#          IDLE_SECONDS=30       the idle window (RSS and CPU sampled, nothing happening)
#          DETECT_TIMEOUT=10     seconds after which an edit not detected counts as missed
#          WITH_KCM=0            1: run the test bed's kube-controller-manager too (its
#                                leader election renews an Endpoints object every 2 s,
#                                which the daemon's route watch sees)
#          CARGO_TARGET_DIR      (default ~/.cache/idp-lab/target)
#          BUILD=0               use the release binary there as it is (no cargo build)
#          IDP_LAB_TESTBED       the test bed (default ~/.cache/idp-lab-testbed): bin/etcd,
#                                bin/kube-apiserver (e2e/testbed/install.sh makes them)
#          BENCH_KEEP=1          keep the temp directory (control plane, lab home, logs,
#                                edits, events)
#
# What runs, all on loopback:
#   - etcd and kube-apiserver from the test bed, started by e2e/testbed/control-plane.sh
#     on a free port (no kube-controller-manager unless WITH_KCM=1; no kubelet);
#   - a lab home (IDP_LAB_HOME, a temp dir) whose lab `bench` is only a kubeconfig in
#     labs/bench/kubeconfig: there is no lab record (`up` needs Docker nodes), so the
#     daemon runs as `serve --name bench --gateway 127.0.0.1:PORT` (as dns.sh and
#     https.sh run it), its HTTPS, HTTP and DNS ports free high ports;
#   - `idp-lab apply --name bench -f component/ -n bench-watchdog --inventory bench`
#     (the objects in files of 500 documents: one file takes at most 1024): one
#     component, server-side applied, recorded for the watchdog
#     (labs/bench/watchdog/components/bench.json);
#   - `idp-lab serve` in the foreground, RUST_LOG=info (the drift lines; nothing at idle),
#     which watches the component (one watch per kind and namespace), re-diffs an object
#     on each of its watch events through a server-side-apply dry-run, and heals it.
#
# Phases:
#   1. ready: the daemon says it watches for drift; the bench then waits until its CPU is
#      quiet (at most 3 ticks in 3 s: its initial check of every object is done; the
#      daemon does not say when that is, see below), checks that its history holds no
#      drift (no false drift over the component), and sends one probe edit (manager
#      `bench-probe`) that must be healed within 30 s; then quiet again.
#   2. idle: IDLE_SECONDS with nothing happening. RSS: VmRSS from /proc/PID/status every
#      0.5 s (the maximum is reported). CPU: utime+stime from /proc/PID/stat over the
#      window, in % of one core (CLK_TCK from getconf).
#   3. edits: `idp-lab watch --name bench -o json` follows the history in the background,
#      each line stamped with its arrival time. EDITS PATCHes (merge patch,
#      `fieldManager=bench-editor`), each by its own curl straight to the API server with
#      the kubeconfig's token, one every EDIT_INTERVAL_MS, edit i changing ConfigMap
#      number (i * 7919) mod CONFIGMAPS to `edit-i` (distinct objects while EDITS <=
#      CONFIGMAPS). The bench then waits until every edit was healed, or DETECT_TIMEOUT s
#      after the last. RSS sampled as above, CPU over the window from the first edit to
#      the end of that wait.
#   4. the check: `idp-lab history -o json`, and the live ConfigMaps and Secrets, against
#      what idp-lab applied.
#
# Detection latency (e2e/bench/watchdog/analyse.py): the `detected` drift event's
# `detected_at` (the daemon's wall clock when its dry-run diff found the drift) minus the
# edit's send time (the wall clock before curl plus curl's time_pretransfer, i.e. when the
# PATCH was about to go out after TCP and TLS set-up); both CLOCK_REALTIME on this host.
# An edit is detected by the first `detected` event of its object with `data.value` live
# at the edit's value; missed: none within DETECT_TIMEOUT s. Heal latency: the `healed`
# event's `detected_at` (when the re-apply returned) minus the send time. "shown by watch"
# is when `idp-lab watch` printed the detection (it polls the daemon every 500 ms).
#
# Output: progress on stderr, the table on stdout, and as the last line
#   bench watchdog: p99_ms=X missed=N idle_rss_mib=Y idle_cpu_pct=Z
# Goals: p99 <= 1000 ms, missed 0, idle RSS <= 40 MiB, idle CPU <= 1 %. For reference,
# Argo CD's application controller is reported at 753 MiB (issue 11).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
ROOT=$PWD
OBJECTS=${OBJECTS:-1000}
SECRETS=${SECRETS:-100}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-1024}
EDITS=${EDITS:-300}
EDIT_INTERVAL_MS=${EDIT_INTERVAL_MS:-100}
IDLE_SECONDS=${IDLE_SECONDS:-30}
DETECT_TIMEOUT=${DETECT_TIMEOUT:-10}
WITH_KCM=${WITH_KCM:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idp-lab/target}
TESTBED=${IDP_LAB_TESTBED:-$HOME/.cache/idp-lab-testbed}
IDP=$CARGO_TARGET_DIR/release/idp-lab
NS=bench-watchdog
LAB=bench
EDITOR=bench-editor

BENCH=watchdog
# shellcheck source=e2e/bench/lib.sh
. "$(dirname "$0")/lib.sh"

require_positive OBJECTS PAYLOAD_BYTES EDITS EDIT_INTERVAL_MS IDLE_SECONDS DETECT_TIMEOUT
case $SECRETS in '' | *[!0-9]*) die "SECRETS must be a number, not '$SECRETS'" ;; esac
CONFIGMAPS=$((OBJECTS - 1 - SECRETS))
[ "$CONFIGMAPS" -ge 1 ] || die "OBJECTS ($OBJECTS) must leave at least one ConfigMap beside the Namespace and $SECRETS Secret(s)"
case $WITH_KCM in 0 | 1) ;; *) die "WITH_KCM must be 0 or 1, not '$WITH_KCM'" ;; esac
[ "$EDITS" -le "$CONFIGMAPS" ] ||
  log "note: EDITS ($EDITS) > ConfigMaps ($CONFIGMAPS): objects are edited again, and a field the same manager sets back 3 times in 10 min becomes contested (not healed, by design)"

install_missing() {
  local pkgs=()
  command -v curl >/dev/null || pkgs+=(curl)
  command -v python3 >/dev/null || pkgs+=(python3)
  command -v openssl >/dev/null || pkgs+=(openssl)
  [ ${#pkgs[@]} = 0 ] && return 0
  apt_install "${pkgs[@]}"
}
install_missing
for b in etcd kube-apiserver; do
  [ -x "$TESTBED/bin/$b" ] || die "no $TESTBED/bin/$b: the test bed makes it (as root: e2e/testbed/install.sh, or e2e/test.sh once), or set IDP_LAB_TESTBED"
done
[ "$WITH_KCM" = 0 ] || [ -x "$TESTBED/bin/kube-controller-manager" ] || die "WITH_KCM=1 but there is no $TESTBED/bin/kube-controller-manager"

if [ "${BUILD:-1}" != 0 ]; then
  log "==> cargo build --release -p idp-lab"
  cargo build --release -p idp-lab >&2
fi
[ -x "$IDP" ] || die "no release binary at $IDP"

TMP=$(mktemp -d -t idp-lab-bench-watchdog.XXXXXX)
HOME_DIR=$TMP/home
LAB_DIR=$HOME_DIR/labs/$LAB
mkdir -p "$LAB_DIR" "$TMP/bin"

# Free ports below the ephemeral range: the API server's (etcd takes it +10000 and
# +10001, control-plane.sh's rule), and the daemon's HTTPS, HTTP, DNS (TCP and UDP) and
# --gateway ports.
read -r API_PORT HTTPS_PORT HTTP_PORT DNS_PORT GATEWAY_PORT < <(python3 - <<'PY'
import random, socket
def free(p, udp=False):
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    try:
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind); s.bind(("127.0.0.1", p)); s.close()
        return True
    except OSError:
        return False
ports = []
while not ports:
    p = random.randint(12000, 21999)
    if free(p) and free(p + 10000) and free(p + 10001):
        ports.append(p)
while len(ports) < 5:
    p = random.randint(22000, 27999)
    if p not in ports and free(p, udp=True):
        ports.append(p)
print(*ports)
PY
)
[ -n "$GATEWAY_PORT" ] || die "no free ports found"

CLK_TCK=$(getconf CLK_TCK)
# CPU ticks (user + system, all threads) of a process.
ticks() {
  local f
  f=$(cut -d' ' -f14,15 "/proc/$1/stat") || die "process $1 is gone"
  echo $((${f% *} + ${f#* }))
}
# status_kib PID FIELD: a /proc/PID/status field in KiB (VmRSS, VmHWM), without a fork.
status_kib() {
  local k v rest
  while read -r k v rest; do
    [ "$k" = "$2:" ] && { echo "$v"; return 0; }
  done <"/proc/$1/status"
  echo 0
}
# sampler PID FILE: "EPOCHREALTIME VmRSS_KiB" every 0.5 s until killed or PID ends.
sampler() {
  local k v rest
  while [ -r "/proc/$1/status" ]; do
    while read -r k v rest; do
      [ "$k" = VmRSS: ] && { printf '%s %s\n' "$EPOCHREALTIME" "$v"; break; }
    done <"/proc/$1/status" 2>/dev/null || break
    sleep 0.5
  done >"$2"
}
max_mib() { awk '$2 > m { m = $2 } END { printf "%.1f\n", m / 1024 }' "$1"; }
pct() { awk -v t="$1" -v hz="$CLK_TCK" -v s="$2" 'BEGIN { printf "%.2f\n", t / hz / s * 100 }'; }
now_us() { echo "${EPOCHREALTIME/./}"; }
alive() { kill -0 "$DAEMON" 2>/dev/null || { tail -30 "$TMP/serve.log" >&2; die "idp-lab serve exited (its log above)"; }; }

# ---- the control plane -----------------------------------------------------------
ln -s "$TESTBED/bin/etcd" "$TESTBED/bin/kube-apiserver" "$TMP/bin/"
[ "$WITH_KCM" = 1 ] && ln -s "$TESTBED/bin/kube-controller-manager" "$TMP/bin/"
log "==> control plane: etcd + kube-apiserver$([ "$WITH_KCM" = 1 ] && echo ' + kube-controller-manager') on 127.0.0.1:$API_PORT"
cp_rc=0
e2e/testbed/control-plane.sh start "$TMP/bin" "$TMP/cp" "$API_PORT" >"$TMP/cp.out" 2>"$TMP/cp.err" || cp_rc=$?
for p in etcd apiserver kcm; do
  [ -f "$TMP/cp/$p.pid" ] && PIDS+=("$(cat "$TMP/cp/$p.pid")")
done
[ "$cp_rc" = 0 ] || { cat "$TMP/cp.err" >&2; die "control-plane.sh failed ($cp_rc)"; }
KUBECONFIG_FILE=$(tail -n 1 "$TMP/cp.out")
TOKEN=$(sed -n 's/.*token: "\([0-9a-f]*\)".*/\1/p' "$KUBECONFIG_FILE")
CA=$TMP/cp/certs/apiserver.crt
API=https://127.0.0.1:$API_PORT
[ -n "$TOKEN" ] && [ -f "$CA" ] || die "no token or CA from $KUBECONFIG_FILE"
# api METHOD PATH [CURL ARGS...]: the body; fails on an HTTP error.
api() {
  local method=$1 path=$2
  shift 2
  curl --fail-with-body -sS --cacert "$CA" -H "Authorization: Bearer $TOKEN" -X "$method" "$@" "$API$path"
}
ready=false
for _ in $(seq 1 60); do
  api GET /readyz >/dev/null 2>&1 && { ready=true; break; }
  sleep 0.5
done
$ready || { tail -20 "$TMP/cp/apiserver.log" >&2; die "the API server is not ready at $API (its log above)"; }
APISERVER_VERSION=$(api GET /version | python3 -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])')

# ---- the lab: a kubeconfig, and the component applied ------------------------------
cp "$KUBECONFIG_FILE" "$LAB_DIR/kubeconfig"
# Run from $TMP so no ./idp-lab.toml is read.
idp() {
  (cd "$TMP" && exec env IDP_LAB_HOME="$HOME_DIR" NO_COLOR=1 IDP_LAB_NETWORK_HTTPS_PORT="$HTTPS_PORT" \
    IDP_LAB_NETWORK_HTTP_PORT="$HTTP_PORT" IDP_LAB_NETWORK_DNS_PORT="$DNS_PORT" "$IDP" "$@")
}
python3 "$ROOT/e2e/bench/watchdog/component.py" "$NS" "$CONFIGMAPS" "$SECRETS" "$PAYLOAD_BYTES" "$TMP"
log "==> idp-lab apply: $OBJECTS objects (1 Namespace, $CONFIGMAPS ConfigMaps, $SECRETS Secrets) as component 'bench'"
t=$(now_us)
idp apply --name "$LAB" -f "$TMP/component" -n "$NS" --inventory bench >"$TMP/apply.out" 2>"$TMP/apply.err" ||
  { tail -20 "$TMP/apply.err" >&2; die "idp-lab apply failed"; }
APPLY_S=$(awk -v a="$t" -v b="$(now_us)" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
log "  $(tail -n 1 "$TMP/apply.out") in $APPLY_S s"
[ -f "$LAB_DIR/watchdog/components/bench.json" ] || die "apply recorded no component for the watchdog ($LAB_DIR/watchdog/components/bench.json)"

# ---- the daemon ---------------------------------------------------------------------
log "==> idp-lab serve --name $LAB (release, RUST_LOG=info)"
SERVE_START=$(now_us)
(
  cd "$TMP"
  exec env RUST_LOG=info IDP_LAB_HOME="$HOME_DIR" NO_COLOR=1 IDP_LAB_NETWORK_HTTPS_PORT="$HTTPS_PORT" \
    IDP_LAB_NETWORK_HTTP_PORT="$HTTP_PORT" IDP_LAB_NETWORK_DNS_PORT="$DNS_PORT" \
    "$IDP" serve --name "$LAB" --gateway "127.0.0.1:$GATEWAY_PORT"
) >"$TMP/serve.out" 2>"$TMP/serve.log" &
DAEMON=$!
PIDS+=("$DAEMON")
watching=false
for _ in $(seq 1 600); do
  alive
  grep -q 'no drift detection' "$TMP/serve.log" && { tail -20 "$TMP/serve.log" >&2; die "the daemon started no drift detection (its log above)"; }
  grep -q 'watching for drift' "$TMP/serve.log" && { watching=true; break; }
  sleep 0.1
done
$watching || { tail -20 "$TMP/serve.log" >&2; die "the daemon did not say 'watching for drift' within 60 s"; }
log "  pid $DAEMON says it watches for drift"

# wait_quiet WHAT: until the daemon took at most 3 CPU ticks in 3 s (at most 180 s).
wait_quiet() {
  local began a b
  began=$(now_us)
  a=$(ticks "$DAEMON")
  while :; do
    sleep 3
    alive
    b=$(ticks "$DAEMON")
    [ $((b - a)) -le 3 ] && break
    a=$b
    [ $(($(now_us) - began)) -lt 180000000 ] || die "the daemon was still busy 180 s after $1"
  done
}
wait_quiet "it started"
READY_S=$(awk -v a="$SERVE_START" -v b="$(now_us)" 'BEGIN { printf "%.1f", (b - a) / 1e6 - 3 }')
log "  quiet ${READY_S} s after its start (the initial check of $OBJECTS objects, 3 s of quiet not counted)"
HWM_READY=$(status_kib "$DAEMON" VmHWM)
idp history --name "$LAB" -o json >"$TMP/history-start.json" || die "idp-lab history failed"
FALSE_START=$(python3 -c 'import json,sys; print(sum(1 for e in json.load(open(sys.argv[1])) if e.get("kind") == "drift"))' "$TMP/history-start.json")
[ "$FALSE_START" = 0 ] || log "  WARNING: $FALSE_START drift event(s) in the history before any edit (false drift): see $TMP/history-start.json"

# value NAME: the live data.value of a ConfigMap.
value() { api GET "/api/v1/namespaces/$NS/configmaps/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["value"])'; }
log "==> probe: one edit by bench-probe must be healed"
api PATCH "/api/v1/namespaces/$NS/configmaps/cm-0000?fieldManager=bench-probe" -H 'Content-Type: application/merge-patch+json' \
  --data-binary '{"data":{"value":"probe"}}' -o /dev/null || die "the probe PATCH failed"
t=$(now_us)
until [ "$(value cm-0000)" = desired-0000 ]; do
  alive
  [ $(($(now_us) - t)) -lt 30000000 ] || die "the probe edit of cm-0000 was not healed in 30 s (daemon log: $TMP/serve.log)"
  sleep 0.1
done
log "  healed; seen healed $(awk -v a="$t" -v b="$(now_us)" 'BEGIN { printf "%.0f", (b - a) / 1e3 }') ms after the PATCH returned (polling every 0.1 s)"
wait_quiet "the probe"

# ---- idle ---------------------------------------------------------------------------
log "==> idle: ${IDLE_SECONDS} s"
sampler "$DAEMON" "$TMP/rss-idle.log" &
SAMPLER=$!
PIDS+=("$SAMPLER")
t0=$(ticks "$DAEMON")
u0=$(now_us)
sleep "$IDLE_SECONDS"
alive
t1=$(ticks "$DAEMON")
u1=$(now_us)
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null || true
IDLE_SECS=$(awk -v a="$u0" -v b="$u1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
IDLE_TICKS=$((t1 - t0))
IDLE_CPU=$(pct "$IDLE_TICKS" "$IDLE_SECS")
IDLE_RSS=$(max_mib "$TMP/rss-idle.log")
THREADS=$(ls "/proc/$DAEMON/task" | wc -l)
IDLE_ANON=$(status_kib "$DAEMON" RssAnon)
IDLE_FILE=$(status_kib "$DAEMON" RssFile)
log "  RSS max $IDLE_RSS MiB, CPU $IDLE_TICKS ticks in $IDLE_SECS s = $IDLE_CPU % of a core, $THREADS threads"

# ---- edits --------------------------------------------------------------------------
log "==> idp-lab watch -o json in the background"
mkfifo "$TMP/watch.fifo"
(
  while IFS= read -r line; do printf '%s\t%s\n' "$EPOCHREALTIME" "$line"; done <"$TMP/watch.fifo" >"$TMP/watch.tsv"
) &
STAMPER=$!
PIDS+=("$STAMPER")
(
  cd "$TMP"
  exec env IDP_LAB_HOME="$HOME_DIR" NO_COLOR=1 "$IDP" watch --name "$LAB" -o json
) >"$TMP/watch.fifo" 2>"$TMP/watch.err" &
WATCHER=$!
PIDS+=("$WATCHER")
sleep 1
kill -0 "$WATCHER" 2>/dev/null || { cat "$TMP/watch.err" >&2; die "idp-lab watch exited"; }

log "==> $EDITS edits, one every $EDIT_INTERVAL_MS ms, by $EDITOR (curl PATCH)"
sampler "$DAEMON" "$TMP/rss-edits.log" &
SAMPLER=$!
PIDS+=("$SAMPLER")
: >"$TMP/edits.tsv"
t0=$(ticks "$DAEMON")
start=$(now_us)
for ((i = 0; i < EDITS; i++)); do
  due=$((start + i * EDIT_INTERVAL_MS * 1000))
  now=$(now_us)
  if ((due > now)); then
    d=$((due - now))
    printf -v frac '%06d' $((d % 1000000))
    sleep "$((d / 1000000)).$frac"
  fi
  printf -v name 'cm-%04d' $(((i * 7919) % CONFIGMAPS))
  before=$EPOCHREALTIME
  curl --fail-with-body -sS --cacert "$CA" -H "Authorization: Bearer $TOKEN" -X PATCH \
    -H 'Content-Type: application/merge-patch+json' --data-binary "{\"data\":{\"value\":\"edit-$i\"}}" \
    -o "$TMP/edit.body" -w "$i\t$name\tedit-$i\t$before\t%{time_pretransfer}\t%{time_total}\t%{http_code}\n" \
    "$API/api/v1/namespaces/$NS/configmaps/$name?fieldManager=$EDITOR" >>"$TMP/edits.tsv" ||
    die "edit $i of $name failed: $(cat "$TMP/edit.body" 2>/dev/null)"
done
last=$(now_us)
STREAM_S=$(awk -v a="$start" -v b="$last" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
log "  sent in $STREAM_S s; waiting for the heals (at most ${DETECT_TIMEOUT} s after the last edit)"
while :; do
  alive
  healed=$(grep -c '"event":"healed"' "$TMP/watch.tsv" || true)
  [ "$healed" -ge "$EDITS" ] && break
  [ $(($(now_us) - last)) -lt $((DETECT_TIMEOUT * 1000000)) ] || break
  sleep 0.2
done
t1=$(ticks "$DAEMON")
u1=$(now_us)
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null || true
EDIT_SECS=$(awk -v a="$start" -v b="$u1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
EDIT_TICKS=$((t1 - t0))
EDIT_CPU=$(pct "$EDIT_TICKS" "$EDIT_SECS")
EDIT_RSS=$(max_mib "$TMP/rss-edits.log")
HWM=$(status_kib "$DAEMON" VmHWM)
log "  RSS max $EDIT_RSS MiB, CPU $EDIT_TICKS ticks in $EDIT_SECS s = $EDIT_CPU % of a core"
# watch polls every 500 ms: one more poll, then Ctrl-C.
sleep 1
kill -INT "$WATCHER" 2>/dev/null
watch_rc=0
wait "$WATCHER" || watch_rc=$?
wait "$STAMPER" 2>/dev/null || true
[ "$watch_rc" = 0 ] || log "  WARNING: idp-lab watch ended with $watch_rc on SIGINT: $(cat "$TMP/watch.err")"

# ---- the check ----------------------------------------------------------------------
idp history --name "$LAB" -o json >"$TMP/history.json" || die "idp-lab history failed"
{
  printf '{"configmaps":'
  api GET "/api/v1/namespaces/$NS/configmaps"
  printf ',"secrets":'
  api GET "/api/v1/namespaces/$NS/secrets"
  printf '}'
} >"$TMP/live.json" || die "listing the live objects failed"
python3 "$ROOT/e2e/bench/watchdog/analyse.py" "$TMP" "$DETECT_TIMEOUT" >"$TMP/analysis" 2>"$TMP/analysis.err" ||
  { cat "$TMP/analysis.err" >&2; die "the analysis failed"; }
cat "$TMP/analysis.err" >&2
declare -A R
while IFS='=' read -r k v; do R[$k]=$v; done <"$TMP/analysis"

mib() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; }
printf 'watchdog benchmark: %s managed objects (1 Namespace, %s ConfigMaps, %s Secrets) in one component; %s edits %s ms apart by another field manager (curl PATCH); kube-apiserver %s%s, %s core(s); idp-lab serve RUST_LOG=info (2 tokio threads, %s threads in all)\n' \
  "$OBJECTS" "$CONFIGMAPS" "$SECRETS" "$EDITS" "$EDIT_INTERVAL_MS" "$APISERVER_VERSION" "$([ "$WITH_KCM" = 1 ] && echo ' + kube-controller-manager')" "$(nproc)" "$THREADS"
row() { printf '%-34s %-22s %-14s %s\n' "$@"; }
row metric idp-lab goal reference
row "detection latency p50" "${R[p50_ms]} ms" - "-"
row "detection latency p99" "${R[p99_ms]} ms" "<= 1000 ms" "max ${R[max_ms]} ms"
row "  after the PATCH returned p50/p99" "${R[p50_returned_ms]} / ${R[p99_returned_ms]} ms" - "-"
row "missed drifts (> ${DETECT_TIMEOUT} s)" "${R[missed]} of ${R[edits]}" 0 "-"
row "heal latency p50/p99" "${R[heal_p50_ms]} / ${R[heal_p99_ms]} ms" - "from the edit's send time"
row "edited objects back to desired" "$((R[edits] - R[edited_live_wrong])) of ${R[edits]}" all "(${R[live_wrong]} of $OBJECTS objects not as applied)"
row "shown by idp-lab watch p50/p99" "${R[watch_p50_ms]} / ${R[watch_p99_ms]} ms" - "watch polls every 500 ms"
row "false drifts" "$FALSE_START at start, ${R[other_detected]} in edits" 0 "-"
row "idle RSS (max)" "$IDLE_RSS MiB" "<= 40 MiB" "Argo CD application controller: 753 MiB (reported)"
row "  of it anonymous / file-backed" "$(mib "$IDLE_ANON") / $(mib "$IDLE_FILE") MiB" - "file-backed: the binary's pages in use"
row "idle CPU (${IDLE_SECONDS} s)" "$IDLE_CPU %" "<= 1 %" "% of one core"
row "RSS under edits (max)" "$EDIT_RSS MiB" - "-"
row "CPU under edits" "$EDIT_CPU %" - "over ${EDIT_SECS} s, first edit to last heal"
row "peak RSS (VmHWM)" "$(mib "$HWM") MiB" - "$(mib "$HWM_READY") MiB after the initial check"
row "initial check (serve to quiet)" "$READY_S s" - "to 3 s; apply took $APPLY_S s"
printf '(one run; latencies from %s detections; heal failures %s, contested %s, diff failures %s, watch lines %s, drift events watch did not show %s)\n' \
  "${R[detected]}" "${R[heal_failed]}" "${R[contested]}" "${R[failed]}" "${R[watch_lines]}" "${R[watch_lost]}"
P99=${R[p99_ms]}
[ "$P99" = - ] && P99=NaN
printf 'bench watchdog: p99_ms=%s missed=%s idle_rss_mib=%s idle_cpu_pct=%s\n' "$P99" "${R[missed]}" "$IDLE_RSS" "$IDLE_CPU"

wrong=()
[ "${R[edited_live_wrong]}" = 0 ] || wrong+=("${R[edited_live_wrong]} edited object(s) not back to what idp-lab set")
[ "${R[live_wrong]}" = "${R[edited_live_wrong]}" ] || wrong+=("$((R[live_wrong] - R[edited_live_wrong])) unedited object(s) not as applied")
[ "$FALSE_START" = 0 ] && [ "${R[other_detected]}" = 0 ] || wrong+=("drift that matches no edit")
[ "${R[heal_failed]}" = 0 ] || wrong+=("${R[heal_failed]} failed heal(s)")
if [ ${#wrong[@]} != 0 ]; then
  log ""
  log "bench watchdog: the product got it wrong: $(IFS=';'; echo "${wrong[*]}") (BENCH_KEEP=1 keeps the evidence)"
  exit 1
fi
