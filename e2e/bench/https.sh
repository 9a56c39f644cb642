#!/usr/bin/env bash
# Benchmark: idp-lab's HTTPS entry (the release binary's `idp-lab serve`, passing TLS
# through by SNI) against nginx's stream module doing the same job (`ssl_preread` and a
# `map` of the SNI name, no termination), and against no proxy at all, with `wrk` over
# TLS and one backend for all three.
#
# NOT part of e2e/test.sh or .ci/run: it measures, it does not check the product (beyond
# failing loudly when a set-up does not answer "ok", or answers anything but 2xx).
#
#   usage: e2e/bench/https.sh
#   env:   ROUNDS=5             measured wrk runs per set-up and connection mode
#          DURATION=8           seconds per wrk run
#          CONNECTIONS=64       wrk connections (-c)
#          THREADS=2            wrk threads (-t)
#          BACKEND_WORKERS=2    worker processes of the backend nginx
#          PROXY_WORKERS=2      worker processes of the nginx stream proxy (idp-lab's
#                               daemon runs a 2-thread tokio runtime)
#          CARGO_TARGET_DIR     (default ~/.cache/idp-lab/target)
#          BENCH_KEEP=1         keep the temp directory (configs, logs, wrk outputs)
#
# The set-ups, all for https://argocd.127-0-0-1.nip.io:PORT/ (wrk runs in a private mount
# namespace whose /etc/hosts maps the name to 127.0.0.1, so the SNI is the name):
#   direct   the backend: nginx `http { server { listen ... ssl http2 reuseport; return 200 "ok\n"; } }`
#            with a self-signed ECDSA P-256 certificate for *.127-0-0-1.nip.io
#            (reuseport: the kernel spreads connections evenly over its workers);
#   nginx    nginx `stream { server { ssl_preread on; proxy_pass $upstream_by_sni; } }`,
#            the map sending *.127-0-0-1.nip.io to the backend;
#   idp-lab  `idp-lab serve --name bench --gateway 127.0.0.1:BACKEND` in the foreground,
#            IDP_LAB_HOME a temp dir, RUST_LOG=warn (no access line per connection).
#            With no lab cluster it has no routes and passes every name under the suffix
#            through, unterminated.
#
# Two connection modes, each its own group of rows:
#   keep-alive  wrk's default: connections made once, then requests on them;
#   close       `-H 'Connection: close'`: a new TCP connection and full TLS handshake
#               per request, which is where SNI routing costs (once per connection).
# The set-ups alternate round by round and the order rotates. A cell is the median over
# the rounds. The proxy's CPU per request (user + system time of its processes during
# the run, from /proc) is shown too, since on 2 cores wrk, the proxy and the backend
# share the CPUs.
#
# Output: per-run lines on stderr, a table on stdout, and as the last line
# `bench https: ratio_vs_nginx=X p99_added_ms=Y`, from the keep-alive group: X is
# idp-lab's requests/s divided by nginx's (above 1: idp-lab is faster), Y is idp-lab's
# p99 latency minus the direct p99, in ms. The goal is X >= 1.0 and Y <= 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
BACKEND_WORKERS=${BACKEND_WORKERS:-2}
PROXY_WORKERS=${PROXY_WORKERS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idp-lab/target}
IDP=$CARGO_TARGET_DIR/release/idp-lab
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
HOST=argocd.127-0-0-1.nip.io

BENCH=https
# shellcheck source=e2e/bench/lib.sh
. "$(dirname "$0")/lib.sh"

require_positive ROUNDS DURATION CONNECTIONS THREADS BACKEND_WORKERS PROXY_WORKERS

# Missing tools are installed with apt-get (as root), services held back.
install_missing() {
  local pkgs=()
  command -v nginx >/dev/null || pkgs+=(nginx)
  [ -f "$STREAM_MODULE" ] || pkgs+=(libnginx-mod-stream)
  command -v wrk >/dev/null || pkgs+=(wrk)
  command -v openssl >/dev/null || pkgs+=(openssl)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v unshare >/dev/null || pkgs+=(util-linux)
  command -v python3 >/dev/null || pkgs+=(python3)
  [ ${#pkgs[@]} = 0 ] && return 0
  apt_install "${pkgs[@]}"
  # The nginx package may start a service even so (no systemd here): not ours to keep.
  for t in nginx wrk openssl curl unshare python3; do command -v "$t" >/dev/null || die "$t is still missing after apt-get"; done
  [ -f "$STREAM_MODULE" ] || die "$STREAM_MODULE is still missing after apt-get"
}
install_missing
[ "$(id -u)" = 0 ] || die "must run as root: wrk runs in a private mount namespace (unshare -m) with its own /etc/hosts"

log "==> cargo build --release -p idp-lab"
cargo build --release -p idp-lab >&2
[ -x "$IDP" ] || die "no release binary at $IDP"

log "==> versions"
log "  $("$IDP" --version 2>&1 | head -n 1)"
log "  $(nginx -v 2>&1 | head -n 1)"
log "  $(wrk -v 2>&1 | head -n 1)"
log "  $(openssl version)"
log "  $(curl --version | head -n 1)"
log "  $(unshare --version)"
log "  kernel $(uname -r), $(nproc) core(s)"

TMP=$(mktemp -d -t idp-lab-bench-https.XXXXXX)
chmod 755 "$TMP"  # nginx's workers run as nobody

# Free ports below every ephemeral range (the close rounds use a lot of those).
read -r BACKEND_PORT NGINX_PORT IDP_PORT IDP_HTTP_PORT IDP_DNS_PORT < <(python3 - <<'PY'
import random, socket
ports = []
while len(ports) < 5:
    p = random.randint(20000, 27999)
    if p in ports:
        continue
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind); s.bind(("127.0.0.1", p)); s.close()
    except OSError:
        continue
    ports.append(p)
print(*ports)
PY
)
[ -n "$IDP_DNS_PORT" ] || die "no free ports found"

# The backend's certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$TMP/backend.key" -out "$TMP/backend.crt" -subj "/CN=*.127-0-0-1.nip.io" \
  -addext "subjectAltName=DNS:*.127-0-0-1.nip.io,DNS:127-0-0-1.nip.io" 2>"$TMP/openssl.log" ||
  { cat "$TMP/openssl.log" >&2; die "openssl req failed"; }

# nginx with its own prefix: conf, pid, logs and temp paths in $TMP/$1.
start_nginx() {
  local name=$1 dir=$TMP/$1
  mkdir -p "$dir/logs"
  chmod 755 "$dir"
  cat >"$dir/nginx.conf"
  nginx -t -q -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" 2>"$dir/logs/test.log" ||
    { cat "$dir/logs/test.log" >&2; die "nginx ($name) rejects its configuration"; }
  nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" >"$dir/logs/stdout.log" 2>&1 &
  PIDS+=($!)
  eval "PID_${name//-/_}=$!"
}

start_nginx backend <<EOF
daemon off;
master_process on;
worker_processes $BACKEND_WORKERS;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/backend/client_body;
  proxy_temp_path $TMP/backend/proxy;
  fastcgi_temp_path $TMP/backend/fastcgi;
  uwsgi_temp_path $TMP/backend/uwsgi;
  scgi_temp_path $TMP/backend/scgi;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$BACKEND_PORT ssl http2 reuseport;
    server_name _;
    ssl_certificate $TMP/backend.crt;
    ssl_certificate_key $TMP/backend.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF

start_nginx nginx-stream <<EOF
load_module $STREAM_MODULE;
daemon off;
master_process on;
worker_processes $PROXY_WORKERS;
pid $TMP/nginx-stream/nginx.pid;
error_log $TMP/nginx-stream/logs/error.log warn;
events { worker_connections 4096; }
stream {
  map \$ssl_preread_server_name \$upstream_by_sni {
    hostnames;
    *.127-0-0-1.nip.io 127.0.0.1:$BACKEND_PORT;
    default "";
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    ssl_preread on;
    proxy_pass \$upstream_by_sni;
  }
}
EOF

# idp-lab's daemon in the foreground; cwd $TMP so no ./idp-lab.toml is picked up.
mkdir -p "$TMP/home" "$TMP/idp-lab"
(
  cd "$TMP"
  exec env RUST_LOG=warn IDP_LAB_HOME="$TMP/home" IDP_LAB_NETWORK_HTTPS_PORT="$IDP_PORT" \
    IDP_LAB_NETWORK_HTTP_PORT="$IDP_HTTP_PORT" IDP_LAB_NETWORK_DNS_PORT="$IDP_DNS_PORT" \
    "$IDP" serve --name bench --gateway "127.0.0.1:$BACKEND_PORT"
) >"$TMP/idp-lab/stdout.log" 2>"$TMP/idp-lab/stderr.log" &
PID_idp_lab=$!
PIDS+=("$PID_idp_lab")

listening=false
for _ in $(seq 1 150); do
  kill -0 "$PID_idp_lab" 2>/dev/null || { cat "$TMP/idp-lab/stderr.log" >&2; die "idp-lab serve exited"; }
  if [ -f "$TMP/home/labs/bench/daemon.json" ]; then listening=true; break; fi
  sleep 0.1
done
$listening || { cat "$TMP/idp-lab/stderr.log" >&2; die "idp-lab serve wrote no daemon.json in 15 s"; }

declare -A PORT=([direct]=$BACKEND_PORT [nginx]=$NGINX_PORT [idp-lab]=$IDP_PORT)
declare -A PROC=([direct]=$PID_backend [nginx]=$PID_nginx_stream [idp-lab]=$PID_idp_lab)
SETUPS=(direct nginx idp-lab)

# Each set-up answers "ok" for the name (nginx takes a moment to be listening).
for s in "${SETUPS[@]}"; do
  ok=false
  for _ in $(seq 1 50); do
    got=$(curl -sk --max-time 5 --resolve "$HOST:${PORT[$s]}:127.0.0.1" "https://$HOST:${PORT[$s]}/" 2>/dev/null || true)
    if [ "$got" = ok ]; then ok=true; break; fi
    sleep 0.1
  done
  $ok || die "$s (https://$HOST:${PORT[$s]}/) does not answer 'ok' (got '$got'); logs in $TMP (BENCH_KEEP=1 keeps them)"
done
# ... and idp-lab's entry, like nginx's map, forwards only names under the suffix.
if curl -sk --max-time 5 --resolve "other.example:$IDP_PORT:127.0.0.1" "https://other.example:$IDP_PORT/" >/dev/null 2>&1; then
  die "idp-lab passed https://other.example through: not the set-up this bench means"
fi

printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\t%s\n' "$HOST" >"$TMP/hosts"

# CPU ticks (user + system) of a process and its children (nginx's workers).
ticks() {
  local total=0 pid f
  for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    f=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null) || continue
    # comm has no spaces here (nginx, idp-lab), so the fields are where man 5 proc says.
    total=$((total + ${f% *} + ${f#* }))
  done
  echo "$total"
}

# run_wrk SETUP MODE SECONDS OUT: one wrk run; prints the proxy's CPU ticks it took.
run_wrk() {
  local s=$1 mode=$2 secs=$3 out=$4 t0 t1 extra=()
  [ "$mode" = close ] && extra=(-H 'Connection: close')
  t0=$(ticks "${PROC[$s]}")
  unshare -m -- sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$TMP/hosts" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency "${extra[@]}" "https://$HOST:${PORT[$s]}/" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk against $s ($mode) failed"; }
  t1=$(ticks "${PROC[$s]}")
  if grep -q 'Non-2xx or 3xx responses' "$out"; then cat "$out" >&2; die "$s ($mode) answered non-2xx"; fi
  grep -q '^Requests/sec:' "$out" || { cat "$out" >&2; die "no Requests/sec in wrk's output for $s ($mode)"; }
  echo $((t1 - t0))
}

# One line per run: requests/s p50_ms p99_ms errors requests.
parse_wrk() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
def pct(p):
    m = re.search(r"^\s*%s%%\s+([0-9.]+)(us|ms|s|m|h)\s*$" % p, text, re.M)
    if not m:
        raise SystemExit(f"no {p}% line in wrk's Latency Distribution")
    return float(m.group(1)) * unit[m.group(2)]
rps = float(re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M).group(1))
m = re.search(r"^\s*(\d+) requests in", text, re.M)
requests = int(m.group(1)) if m else 0
errors = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    errors = sum(int(x) for x in m.groups())
print(f"{rps:.2f} {pct(50):.4f} {pct(99):.4f} {errors} {requests}")
PY
}

CLK_TCK=$(getconf CLK_TCK)
RESULTS=$TMP/results
: >"$RESULTS"
log "==> warm-up (2 s per set-up, not counted)"
for s in "${SETUPS[@]}"; do run_wrk "$s" keep-alive 2 "$TMP/warmup-$s.log" >/dev/null; done

for mode in keep-alive close; do
  log "==> $mode: $ROUNDS round(s) of ${DURATION} s per set-up, wrk -t$THREADS -c$CONNECTIONS"
  for r in $(seq 1 "$ROUNDS"); do
    # Rotate the order: round 1 direct nginx idp-lab, round 2 nginx idp-lab direct, ...
    order=()
    for i in 0 1 2; do order+=("${SETUPS[$(((i + r - 1) % 3))]}"); done
    for s in "${order[@]}"; do
      out=$TMP/wrk-$mode-$s-$r.log
      t=$(run_wrk "$s" "$mode" "$DURATION" "$out")
      read -r rps p50 p99 errors requests < <(parse_wrk "$out")
      [ -n "$requests" ] || { cat "$out" >&2; die "could not parse wrk's output for $s ($mode)"; }
      printf '%s %s %s %s %s %s %s %s\n' "$mode" "$s" "$r" "$rps" "$p50" "$p99" "$errors" \
        "$(awk -v t="$t" -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.2f", n ? t / hz * 1e6 / n : 0 }')" >>"$RESULTS"
      log "  $(printf '%-10s round %d  %-8s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %s' "$mode" "$r" "$s" "$rps" "$p50" "$p99" "$errors")"
    done
  done
done

python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$THREADS" "$CONNECTIONS" "$(nproc)" "$PROXY_WORKERS" "$BACKEND_WORKERS" <<'PY'
import statistics, sys
path, rounds, duration, threads, conns, cores, pw, bw = sys.argv[1:9]
rows = {}
for line in open(path):
    mode, setup, _r, rps, p50, p99, errors, cpu = line.split()
    rows.setdefault((mode, setup), []).append((float(rps), float(p50), float(p99), int(errors), float(cpu)))
med = lambda xs: statistics.median(xs)
print()
print(f"https benchmark: wrk -t{threads} -c{conns} -d{duration}s --latency over TLS, {rounds} round(s) per set-up, {cores} core(s); "
      f"nginx proxy {pw} worker(s), backend nginx {bw} worker(s), idp-lab serve RUST_LOG=warn (2 tokio threads)")
print(f"{'mode':<11} {'setup':<13} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'proxy CPU us/req':>17} {'errors':>7}    rounds requests/s")
summary = {}
names = {"direct": "direct", "nginx": "nginx stream", "idp-lab": "idp-lab"}
for mode in ("keep-alive", "close"):
    for setup in ("direct", "nginx", "idp-lab"):
        runs = rows[(mode, setup)]
        rps, p50, p99 = med([x[0] for x in runs]), med([x[1] for x in runs]), med([x[2] for x in runs])
        errors = sum(x[3] for x in runs)
        cpu = "-" if setup == "direct" else f"{med([x[4] for x in runs]):.1f}"
        summary[(mode, setup)] = (rps, p50, p99)
        per = " ".join(f"{x[0]:.0f}" for x in runs)
        print(f"{mode:<11} {names[setup]:<13} {rps:>11.0f} {p50:>8.3f} {p99:>8.3f} {cpu:>17} {errors:>7}    {per}")
def ratio(mode):
    return summary[(mode, "idp-lab")][0] / summary[(mode, "nginx")][0]
def added(mode):
    return summary[(mode, "idp-lab")][2] - summary[(mode, "direct")][2]
def vs_nginx(mode):
    return summary[(mode, "idp-lab")][2] - summary[(mode, "nginx")][2]
print(f"(medians; p99 added = idp-lab p99 - direct p99; idp-lab p99 - nginx stream p99: keep-alive {vs_nginx('keep-alive'):+.3f} ms, "
      f"close {vs_nginx('close'):+.3f} ms)")
print(f"(close, 'Connection: close', one TLS handshake per request: ratio_vs_nginx={ratio('close'):.2f} "
      f"p99_added_ms={added('close'):.3f}; the last line is keep-alive's; goal: ratio >= 1.0, p99 added <= 1 ms)")
print(f"bench https: ratio_vs_nginx={ratio('keep-alive'):.2f} p99_added_ms={added('keep-alive'):.3f}")
PY
