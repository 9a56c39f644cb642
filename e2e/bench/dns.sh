#!/usr/bin/env bash
# Benchmark: idp-lab's DNS answer (the release binary's `idp-lab serve`, UDP) against
# dnsmasq answering the same names from its configuration, with `dnsperf`.
#
# NOT part of e2e/test.sh or .ci/run: it measures, it does not check the product (beyond
# failing loudly when the two servers do not answer the bench's names alike, or a
# response code other than NOERROR comes back under load).
#
#   usage: e2e/bench/dns.sh
#   env:   ROUNDS=5             measured dnsperf runs per server
#          DURATION=10          seconds per dnsperf run (-l)
#          CLIENTS=4            dnsperf clients (-c: UDP sockets)
#          THREADS=1            dnsperf threads (-T)
#          OUTSTANDING=100      dnsperf queries in flight (-q)
#          CARGO_TARGET_DIR     (default ~/.cache/idp-lab/target)
#          BENCH_KEEP=1         keep the temp directory (query file, configs, outputs)
#
# The servers, both on 127.0.0.1, UDP:
#   idp-lab  `idp-lab serve --name bench --gateway 127.0.0.1:PORT` in the foreground,
#            IDP_LAB_HOME a temp dir, RUST_LOG=warn; its DNS answer on a free port;
#   dnsmasq  `dnsmasq --keep-in-foreground --no-resolv --no-hosts --local-ttl=300 ...`
#            with one `address=/NAME/ADDRESS` line per name of the query file: it answers
#            from its configuration, never asks an upstream, and has nothing to cache
#            (its cache holds upstream answers only).
# The query file: A queries for 24 names under nip.io and sslip.io, in the dashed,
# dotted and hex forms (with and without a prefix), 8 of them the lab's default suffix
# 127-0-0-1.nip.io or names under it. Before measuring, dig asks both servers every name and the
# answers (address, TTL, response code) must agree with each other and with the name.
# The servers alternate round by round and the order alternates too. A cell is the
# median over the rounds; the server's CPU per query (user + system time during the run,
# from /proc) is shown too, since dnsperf and the server share the cores.
#
# Output: per-run lines on stderr, a table on stdout, and as the last line
# `bench dns: ratio_vs_dnsmasq=X`: idp-lab's queries/s divided by dnsmasq's (above 1:
# idp-lab is faster). The goal is X >= 1.0.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-4}
THREADS=${THREADS:-1}
OUTSTANDING=${OUTSTANDING:-100}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idp-lab/target}
IDP=$CARGO_TARGET_DIR/release/idp-lab

BENCH=dns
# shellcheck source=e2e/bench/lib.sh
. "$(dirname "$0")/lib.sh"

require_positive ROUNDS DURATION CLIENTS THREADS OUTSTANDING

# Missing tools are installed with apt-get (as root), services held back. dnsmasq-base
# is the binary without the service.
install_missing() {
  local pkgs=()
  command -v dnsperf >/dev/null || pkgs+=(dnsperf)
  command -v dnsmasq >/dev/null || pkgs+=(dnsmasq-base)
  command -v dig >/dev/null || pkgs+=(bind9-dnsutils)
  command -v python3 >/dev/null || pkgs+=(python3)
  [ ${#pkgs[@]} = 0 ] && return 0
  apt_install "${pkgs[@]}"
  for t in dnsperf dnsmasq dig python3; do command -v "$t" >/dev/null || die "$t is still missing after apt-get"; done
}
install_missing

log "==> cargo build --release -p idp-lab"
cargo build --release -p idp-lab >&2
[ -x "$IDP" ] || die "no release binary at $IDP"

log "==> versions"
log "  $("$IDP" --version 2>&1 | head -n 1)"
log "  $(dnsmasq --version | head -n 1)"
log "  dnsperf $(dnsperf -h 2>&1 | sed -n 's/^Version //p' | head -n 1)"
log "  $(dig -v 2>&1 | head -n 1)"
log "  kernel $(uname -r), $(nproc) core(s)"

TMP=$(mktemp -d -t idp-lab-bench-dns.XXXXXX)
chmod 755 "$TMP"  # dnsmasq drops to nobody

# Free ports below every ephemeral range, free for both TCP and UDP (idp-lab's DNS
# answer binds both).
read -r IDP_DNS_PORT IDP_HTTPS_PORT IDP_HTTP_PORT DNSMASQ_PORT GATEWAY_PORT < <(python3 - <<'PY'
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
[ -n "$GATEWAY_PORT" ] || die "no free ports found"

# The names: NAME ADDRESS (the address the name encodes).
cat >"$TMP/names" <<'EOF'
argocd.127-0-0-1.nip.io 127.0.0.1
grafana.127-0-0-1.nip.io 127.0.0.1
backstage.127-0-0-1.nip.io 127.0.0.1
gitea.127-0-0-1.nip.io 127.0.0.1
keycloak.127-0-0-1.nip.io 127.0.0.1
registry.127-0-0-1.nip.io 127.0.0.1
api.v2.127-0-0-1.nip.io 127.0.0.1
127-0-0-1.nip.io 127.0.0.1
10-0-0-1.nip.io 10.0.0.1
app-10-0-0-1.nip.io 10.0.0.1
app.192-168-1-20.nip.io 192.168.1.20
10.0.0.1.nip.io 10.0.0.1
app.10.0.0.1.nip.io 10.0.0.1
www.192.168.1.20.nip.io 192.168.1.20
7f000001.nip.io 127.0.0.1
app-0a000001.nip.io 10.0.0.1
web.c0a80114.nip.io 192.168.1.20
argocd.127-0-0-1.sslip.io 127.0.0.1
app-192-168-1-20.sslip.io 192.168.1.20
10.1.2.3.sslip.io 10.1.2.3
grafana.10.1.2.3.sslip.io 10.1.2.3
0a010203.sslip.io 10.1.2.3
app-7f000001.sslip.io 127.0.0.1
api.web-c0a80114.sslip.io 192.168.1.20
EOF
NAMES=$(wc -l <"$TMP/names")
awk '{ print $1, "A" }' "$TMP/names" >"$TMP/queries"
{
  echo "# One address per name of the query file (address=/NAME/ also answers the names under it)."
  awk '{ printf "address=/%s/%s\n", $1, $2 }' "$TMP/names"
} >"$TMP/dnsmasq.conf"

# idp-lab's daemon in the foreground; cwd $TMP so no ./idp-lab.toml is picked up. The
# --gateway address is not used (nothing asks its HTTPS entry): it makes `serve` run
# without a lab cluster.
mkdir -p "$TMP/home"
(
  cd "$TMP"
  exec env RUST_LOG=warn IDP_LAB_HOME="$TMP/home" IDP_LAB_NETWORK_HTTPS_PORT="$IDP_HTTPS_PORT" \
    IDP_LAB_NETWORK_HTTP_PORT="$IDP_HTTP_PORT" IDP_LAB_NETWORK_DNS_PORT="$IDP_DNS_PORT" \
    "$IDP" serve --name bench --gateway "127.0.0.1:$GATEWAY_PORT"
) >"$TMP/idp-lab.stdout.log" 2>"$TMP/idp-lab.stderr.log" &
PID_idp_lab=$!
PIDS+=("$PID_idp_lab")

dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll --conf-file="$TMP/dnsmasq.conf" \
  --port="$DNSMASQ_PORT" --listen-address=127.0.0.1 --bind-interfaces --local-ttl=300 \
  --pid-file="$TMP/dnsmasq.pid" --log-facility="$TMP/dnsmasq.log" >"$TMP/dnsmasq.stdout.log" 2>&1 &
PID_dnsmasq=$!
PIDS+=("$PID_dnsmasq")

listening=false
for _ in $(seq 1 150); do
  kill -0 "$PID_idp_lab" 2>/dev/null || { cat "$TMP/idp-lab.stderr.log" >&2; die "idp-lab serve exited"; }
  kill -0 "$PID_dnsmasq" 2>/dev/null || { cat "$TMP/dnsmasq.stdout.log" "$TMP/dnsmasq.log" >&2 2>/dev/null; die "dnsmasq exited"; }
  if [ -f "$TMP/home/labs/bench/daemon.json" ]; then listening=true; break; fi
  sleep 0.1
done
$listening || { cat "$TMP/idp-lab.stderr.log" >&2; die "idp-lab serve wrote no daemon.json in 15 s"; }

declare -A PORT=([idp-lab]=$IDP_DNS_PORT [dnsmasq]=$DNSMASQ_PORT)
declare -A PROC=([idp-lab]=$PID_idp_lab [dnsmasq]=$PID_dnsmasq)
SERVERS=(idp-lab dnsmasq)

# dig, both servers, every name: "RCODE TTL ADDRESS" must be the same, and the address
# the name's.
answer() {
  dig +time=2 +tries=2 +norecurse +noall +comments +answer -p "${PORT[$1]}" @127.0.0.1 "$2" A 2>&1 |
    awk '/->>HEADER<<-/ { for (i = 1; i <= NF; i++) if ($i == "status:") { s = $(i + 1); sub(",", "", s) } }
         $4 == "A" { a = a " " $2 " " $5 } END { print s a }'
}
log "==> dig: both servers answer the $NAMES names alike"
while read -r name want; do
  a=$(answer idp-lab "$name")
  b=$(answer dnsmasq "$name")
  [ "$a" = "NOERROR 300 $want" ] || die "idp-lab answers '$a' for $name, not 'NOERROR 300 $want'"
  [ "$b" = "$a" ] || die "dnsmasq answers '$b' for $name, idp-lab '$a'"
done <"$TMP/names"
log "  e.g. argocd.127-0-0-1.nip.io: $(answer idp-lab argocd.127-0-0-1.nip.io) (idp-lab), $(answer dnsmasq argocd.127-0-0-1.nip.io) (dnsmasq)"

# CPU ticks (user + system) of a process (all its threads).
ticks() {
  local f
  f=$(cut -d' ' -f14,15 "/proc/$1/stat")
  echo $((${f% *} + ${f#* }))
}

# run_dnsperf SERVER SECONDS OUT: one dnsperf run; prints the server's CPU ticks it took.
run_dnsperf() {
  local s=$1 secs=$2 out=$3 t0 t1
  t0=$(ticks "${PROC[$s]}")
  dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$TMP/queries" -l "$secs" -c "$CLIENTS" -T "$THREADS" \
    -q "$OUTSTANDING" >"$out" 2>&1 || { cat "$out" >&2; die "dnsperf against $s failed"; }
  t1=$(ticks "${PROC[$s]}")
  grep -q 'Queries per second:' "$out" || { cat "$out" >&2; die "no 'Queries per second' in dnsperf's output for $s"; }
  echo $((t1 - t0))
}

# One line per run: queries/s avg_latency_ms lost completed, or a failure when a
# response code other than NOERROR came back.
parse_dnsperf() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def num(pattern):
    m = re.search(pattern, text, re.M)
    if not m:
        raise SystemExit(f"dnsperf's output has no match for {pattern!r}")
    return m.group(1)
codes = num(r"^\s*Response codes:\s+(.*)$")
if [c for c in re.findall(r"([A-Z]+) \d+", codes) if c != "NOERROR"]:
    raise SystemExit(f"response codes other than NOERROR: {codes}")
qps = float(num(r"^\s*Queries per second:\s+([0-9.]+)"))
lat = float(num(r"^\s*Average Latency \(s\):\s+([0-9.]+)")) * 1e3
lost = int(num(r"^\s*Queries lost:\s+(\d+)"))
done = int(num(r"^\s*Queries completed:\s+(\d+)"))
print(f"{qps:.2f} {lat:.4f} {lost} {done}")
PY
}

# UDP datagrams the kernel dropped for a full receive or send buffer, on any socket.
udp_drops() {
  awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] + $c["SndbufErrors"] }' /proc/net/snmp
}

# For a run that lost queries: where they went (dnsperf's own lines, the kernel's
# counters), so that a stall of the server tells from a full socket buffer.
diagnose() {
  local out=$1 udp0=$2 lost timeouts late drops
  lost=$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' "$out")
  [ "${lost:-0}" = 0 ] && return 0
  timeouts=$(grep -c '^\[Timeout\]' "$out" || true)
  late=$(grep -c 'unexpected (maybe timed out) id' "$out" || true)
  drops=$(($(udp_drops) - udp0))
  printf '  (timed out: %s, answered too late: %s, UDP buffer drops in the kernel: %s; see %s)' "$timeouts" "$late" "$drops" \
    "$([ "${BENCH_KEEP:-}" = 1 ] && echo "$out" || echo "BENCH_KEEP=1 keeps dnsperf's output")"
}

CLK_TCK=$(getconf CLK_TCK)
RESULTS=$TMP/results
: >"$RESULTS"
log "==> warm-up (2 s per server, not counted)"
for s in "${SERVERS[@]}"; do run_dnsperf "$s" 2 "$TMP/warmup-$s.log" >/dev/null; done

log "==> $ROUNDS round(s) of $DURATION s per server, dnsperf -c $CLIENTS -T $THREADS -q $OUTSTANDING"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order=(idp-lab dnsmasq); else order=(dnsmasq idp-lab); fi
  for s in "${order[@]}"; do
    out=$TMP/dnsperf-$s-$r.log
    udp0=$(udp_drops)
    t=$(run_dnsperf "$s" "$DURATION" "$out")
    parsed=$(parse_dnsperf "$out") || { cat "$out" >&2; die "dnsperf against $s: see above"; }
    read -r qps lat lost done <<<"$parsed"
    printf '%s %s %s %s %s %s\n' "$s" "$r" "$qps" "$lat" "$lost" \
      "$(awk -v t="$t" -v hz="$CLK_TCK" -v n="$done" 'BEGIN { printf "%.2f", n ? t / hz * 1e6 / n : 0 }')" >>"$RESULTS"
    log "  round $r  $(printf '%-8s %10.0f queries/s  avg %7.3f ms  lost %s' "$s" "$qps" "$lat" "$lost")$(diagnose "$out" "$udp0")"
  done
done

python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$CLIENTS" "$THREADS" "$OUTSTANDING" "$(nproc)" "$NAMES" <<'PY'
import statistics, sys
path, rounds, duration, clients, threads, outstanding, cores, names = sys.argv[1:9]
rows = {}
for line in open(path):
    server, _r, qps, lat, lost, cpu = line.split()
    rows.setdefault(server, []).append((float(qps), float(lat), int(lost), float(cpu)))
med = statistics.median
print()
print(f"dns benchmark: dnsperf -l {duration} -c {clients} -T {threads} -q {outstanding}, UDP, A queries for {names} names, "
      f"{rounds} round(s) per server, {cores} core(s); idp-lab serve RUST_LOG=warn (2 tokio threads), dnsmasq (1 process)")
print(f"{'server':<9} {'queries/s':>10} {'avg latency':>12} {'lost':>6} {'server CPU us/query':>20}    rounds queries/s")
qps = {}
for server in ("idp-lab", "dnsmasq"):
    runs = rows[server]
    qps[server] = med([x[0] for x in runs])
    lat = med([x[1] for x in runs])
    lost = sum(x[2] for x in runs)
    cpu = med([x[3] for x in runs])
    per = " ".join(f"{x[0]:.0f}" for x in runs)
    print(f"{server:<9} {qps[server]:>10.0f} {lat:>9.3f} ms {lost:>6} {cpu:>20.1f}    {per}")
print("(medians; lost: summed over the rounds; goal: ratio >= 1.0)")
print(f"bench dns: ratio_vs_dnsmasq={qps['idp-lab'] / qps['dnsmasq']:.2f}")
PY
