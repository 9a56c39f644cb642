#!/usr/bin/env bash
# Benchmark: `idp-lab apply` (the release binary) against the version-matched
# `kubectl apply --server-side` (kubectl 1.20.2 from the test bed), on one throwaway
# control plane (e2e/testbed/control-plane.sh: etcd + kube-apiserver +
# kube-controller-manager on loopback).
#
# NOT part of e2e/test.sh or .ci/run: it measures, it does not check the product (beyond
# failing loudly when either tool errors or does not restore a changed object).
#
#   usage: e2e/bench/apply.sh
#   env:   ROUNDS=5             rounds per phase and tool
#          IDP_LAB_TESTBED      test bed cache (default ~/.cache/idp-lab-testbed; needs bin/)
#          CARGO_TARGET_DIR     (default ~/.cache/idp-lab/target)
#          BENCH_KEEP=1         keep the temp directory (objects, logs) for inspection
#
# The input: 524 objects in 4 namespaces of each tool's own (the 4 Namespaces
# themselves, 300 ConfigMaps, 80 Deployments, 80 Services, 60 Widgets of the bench's
# own CRD `widgets.bench.idp-lab.dev`, installed once before the rounds).
#
# What is measured (wall clock of the whole command, process start included), with the
# two tools interleaved round by round and the order alternating:
#   cold   objects absent: each round applies to fresh namespaces (a new prefix per round
#          and tool), Namespace objects included in the input;
#          kubectl --kubeconfig K apply --server-side --force-conflicts --field-manager=kubectl-bench -f DIR
#          idp-lab apply -q -f DIR --kubeconfig K --inventory bench-PREFIX -n PREFIX-a
#          (IDP_LAB_HOME is a temp dir: idp-lab's apply cache starts empty and persists
#          between idp-lab's rounds, as it does for a user).
#          After each cold apply the objects are counted, and the bench waits (untimed)
#          for the controller manager to create each Deployment's ReplicaSet and Pod, so
#          one tool's aftermath does not land in the other's timing.
#   no-op  the same objects re-applied to the tool's namespaces of its last cold round,
#          after ONE object was changed behind its back (`kubectl patch` of a ConfigMap
#          value the manifest sets); after the apply the value must be the manifest's
#          again, for both tools, or the bench fails.
#
# Output: per-round times, a table of medians (kubectl, idp-lab, ratio), and as the last
# line `bench apply: cold_ratio=X noop_ratio=Y`, where a ratio is kubectl's median divided
# by idp-lab's (above 1: idp-lab is faster). The goal is >= 2 cold and >= 10 no-op.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idp-lab/target}
export IDP_LAB_TESTBED=${IDP_LAB_TESTBED:-$HOME/.cache/idp-lab-testbed}
BIN=$IDP_LAB_TESTBED/bin
KUBECTL_BIN=$BIN/kubectl
IDP=$CARGO_TARGET_DIR/release/idp-lab
unset KUBECONFIG

die() { printf '\nbench apply: FAILED: %s\n' "$*" >&2; exit 1; }
log() { printf '%s\n' "$*" >&2; }

case $ROUNDS in '' | *[!0-9]* | 0) die "ROUNDS must be a positive integer, not '$ROUNDS'" ;; esac
for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: build the test bed first (e2e/testbed/install.sh)"
done
command -v python3 >/dev/null || die "python3 is needed"

log "==> cargo build --release -p idp-lab"
cargo build --release -p idp-lab >&2
[ -x "$IDP" ] || die "no release binary at $IDP"

TMP=$(mktemp -d -t idp-lab-bench-apply.XXXXXX)
STATE=$TMP/control-plane
cleanup() {
  local rc=$?
  set +e
  if [ -d "$STATE" ]; then
    "$ROOT/e2e/testbed/control-plane.sh" stop "$STATE"
    for p in kcm apiserver etcd; do
      [ -f "$STATE/$p.pid" ] || continue
      pid=$(cat "$STATE/$p.pid")
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    done
  fi
  if [ "${BENCH_KEEP:-}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port whose +10000 and +10001 (etcd's) are free too.
PORT=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 45000)
    try:
        socks = []
        for q in (p, p + 10000, p + 10001):
            s = socket.socket(); s.bind(("127.0.0.1", q)); socks.append(s)
        for s in socks: s.close()
        print(p); break
    except OSError:
        for s in socks: s.close()
else:
    raise SystemExit("no free port")
PY
)

log "==> control plane on 127.0.0.1:$PORT ($STATE)"
KC=$("$ROOT/e2e/testbed/control-plane.sh" start "$BIN" "$STATE" "$PORT" | tail -n 1)
[ -f "$KC" ] || die "control-plane.sh printed no kubeconfig"
k() { "$KUBECTL_BIN" --kubeconfig "$KC" --cache-dir "$TMP/kubectl-cache" "$@"; }

ready=false
for _ in $(seq 1 120); do
  if k get --raw /readyz >/dev/null 2>&1 && k get namespace default >/dev/null 2>&1; then ready=true; break; fi
  sleep 0.5
done
$ready || die "the control plane is not ready after 60 s (logs in $STATE; BENCH_KEEP=1 keeps them)"

# The bench's own CRD, once.
cat > "$TMP/crd.yaml" <<'YAML'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.bench.idp-lab.dev
spec:
  group: bench.idp-lab.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string}
              enabled: {type: boolean}
              tags: {type: array, items: {type: string}}
YAML
k apply -f "$TMP/crd.yaml" >/dev/null
k wait --for condition=established --timeout=60s crd/widgets.bench.idp-lab.dev >/dev/null
served=false
for _ in $(seq 1 60); do
  if k get widgets.bench.idp-lab.dev -A >/dev/null 2>&1; then served=true; break; fi
  sleep 1
done
$served || die "widgets.bench.idp-lab.dev is Established but not served after 60 s"

# The objects under $1, for the namespaces $2-a .. $2-d. Prints the object count.
generate() {
  python3 - "$1" "$2" <<'PY'
import os, sys
out, prefix = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
nss = [f"{prefix}-{x}" for x in "abcd"]
ns = lambda i: nss[i % len(nss)]
docs = {k: [] for k in ("00-namespaces", "10-configmaps", "20-deployments", "30-services", "40-widgets")}
for n in nss:
    docs["00-namespaces"].append(f"""apiVersion: v1
kind: Namespace
metadata:
  name: {n}
  labels: {{bench: {prefix}}}
""")
for i in range(300):
    docs["10-configmaps"].append(f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{i:03d}
  namespace: {ns(i)}
  labels: {{bench: {prefix}, app: cm-{i:03d}}}
data:
  value: v-{i:03d}
  settings.ini: |
    [main]
    index = {i}
    name = cm-{i:03d}
  flag: "true"
""")
for i in range(80):
    docs["20-deployments"].append(f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{i:03d}
  namespace: {ns(i)}
  labels: {{bench: {prefix}, app: web-{i:03d}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web-{i:03d}}}
  template:
    metadata:
      labels: {{bench: {prefix}, app: web-{i:03d}}}
    spec:
      containers:
      - name: web
        image: registry.invalid/bench/web:1.0
        ports:
        - {{name: http, containerPort: 8080, protocol: TCP}}
        env:
        - {{name: INDEX, value: "{i}"}}
        resources:
          requests: {{cpu: 10m, memory: 16Mi}}
""")
    docs["30-services"].append(f"""apiVersion: v1
kind: Service
metadata:
  name: web-{i:03d}
  namespace: {ns(i)}
  labels: {{bench: {prefix}, app: web-{i:03d}}}
spec:
  selector: {{app: web-{i:03d}}}
  ports:
  - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}
""")
for i in range(60):
    docs["40-widgets"].append(f"""apiVersion: bench.idp-lab.dev/v1
kind: Widget
metadata:
  name: widget-{i:03d}
  namespace: {ns(i)}
  labels: {{bench: {prefix}}}
spec:
  size: {i + 1}
  color: {("red", "green", "blue")[i % 3]}
  enabled: {"true" if i % 2 else "false"}
  tags: [bench, w{i}]
""")
for name, ds in docs.items():
    with open(os.path.join(out, name + ".yaml"), "w") as f:
        f.write("---\n".join(ds))
print(sum(len(ds) for ds in docs.values()))
PY
}

# How many of the generated kinds carry the label bench=$1.
count_objects() {
  local n
  n=$(k get namespaces -l "bench=$1" --no-headers 2>/dev/null | wc -l)
  echo $((n + $(k get configmaps,deployments.apps,services,widgets.bench.idp-lab.dev -A -l "bench=$1" --no-headers 2>/dev/null | wc -l)))
}

# Untimed: waits until the controller manager made each Deployment's ReplicaSet and Pod.
settle() {
  local n
  for _ in $(seq 1 120); do
    n=$(k get replicasets.apps,pods -A -l "bench=$1" --no-headers 2>/dev/null | wc -l)
    [ "$n" -ge 160 ] && return 0
    sleep 0.5
  done
  log "warning: after 60 s only $n of 160 ReplicaSets and Pods for $1 exist; timings may be noisy"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# run_tool TOOL PREFIX LOG: applies $TMP/objects-PREFIX with TOOL; prints the seconds.
run_tool() {
  local tool=$1 prefix=$2 out=$3 t0 t1 rc=0
  local dir=$TMP/objects-$prefix
  t0=$(now)
  case $tool in
    kubectl)
      "$KUBECTL_BIN" --kubeconfig "$KC" --cache-dir "$TMP/kubectl-cache" apply --server-side \
        --force-conflicts --field-manager=kubectl-bench -f "$dir" >"$out" 2>&1 || rc=$?
      ;;
    idp-lab)
      IDP_LAB_HOME=$TMP/idp-lab-home "$IDP" apply -q -f "$dir" --kubeconfig "$KC" \
        --inventory "bench-$prefix" -n "$prefix-a" >"$out" 2>&1 || rc=$?
      ;;
  esac
  t1=$(now)
  if [ "$rc" != 0 ]; then
    log "--- $tool apply to $prefix exited with $rc; its output:"
    cat "$out" >&2
    die "$tool apply to $prefix failed (exit $rc)"
  fi
  elapsed "$t0" "$t1"
}

# The last line of a tool's output, for the per-round log.
last_line() { tail -n 1 "$1" | cut -c1-110; }

declare -A COLD NOOP LAST
cd "$TMP"  # no ./idp-lab.toml is picked up
log "==> $ROUNDS round(s) per phase; objects per run: $(generate "$TMP/objects-probe" probe)"
rm -rf "$TMP/objects-probe"
COUNT=0

log "==> cold rounds (fresh namespaces each time)"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="kubectl idp-lab"; else order="idp-lab kubectl"; fi
  for tool in $order; do
    prefix=${tool:0:1}c$r  # kc1, ic1, kc2, ...: namespaces kc1-a .. kc1-d
    COUNT=$(generate "$TMP/objects-$prefix" "$prefix")
    out=$TMP/cold-$tool-$r.log
    s=$(run_tool "$tool" "$prefix" "$out")
    n=$(count_objects "$prefix")
    [ "$n" = "$COUNT" ] || { cat "$out" >&2; die "after $tool's cold apply, $n of $COUNT objects of $prefix exist"; }
    COLD[$tool]="${COLD[$tool]:-} $s"
    LAST[$tool]=$prefix
    log "  cold  round $r  $(printf '%-8s %7.3f s' "$tool" "$s")  | $(last_line "$out")"
    settle "$prefix"
  done
done

log "==> no-op rounds (one ConfigMap changed behind each tool's back)"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="kubectl idp-lab"; else order="idp-lab kubectl"; fi
  for tool in $order; do
    prefix=${LAST[$tool]}
    k -n "$prefix-a" patch configmap cm-000 --type merge -p "{\"data\":{\"value\":\"tampered-$r\"}}" >/dev/null
    got=$(k -n "$prefix-a" get configmap cm-000 -o 'jsonpath={.data.value}')
    [ "$got" = "tampered-$r" ] || die "the patch behind $tool's back did not take (value '$got')"
    out=$TMP/noop-$tool-$r.log
    s=$(run_tool "$tool" "$prefix" "$out")
    got=$(k -n "$prefix-a" get configmap cm-000 -o 'jsonpath={.data.value}')
    if [ "$got" != v-000 ]; then
      log "--- $tool's output:"
      cat "$out" >&2
      die "$tool did not restore ConfigMap $prefix-a/cm-000 in no-op round $r: data.value is '$got', the manifest says 'v-000'"
    fi
    NOOP[$tool]="${NOOP[$tool]:-} $s"
    log "  no-op round $r  $(printf '%-8s %7.3f s' "$tool" "$s")  | $(last_line "$out")"
  done
done

# The table and the last line.
python3 - "$COUNT" "$ROUNDS" "$(nproc)" "${COLD[kubectl]}" "${COLD[idp-lab]}" "${NOOP[kubectl]}" "${NOOP[idp-lab]}" <<'PY'
import statistics, sys
count, rounds, cores = sys.argv[1:4]
ck, ci, nk, ni = ([float(x) for x in a.split()] for a in sys.argv[4:8])
rows = [("cold", ck, ci), ("no-op", nk, ni)]
ratios = {}
print()
print(f"apply benchmark: {count} objects (4 Namespaces, 300 ConfigMaps, 80 Deployments, 80 Services, 60 Widgets), "
      f"{rounds} round(s) each, {cores} core(s)")
print(f"{'phase':<7} {'kubectl 1.20.2 SSA':>19} {'idp-lab':>10} {'ratio':>8}    rounds kubectl | idp-lab (s)")
for name, k, i in rows:
    mk, mi = statistics.median(k), statistics.median(i)
    ratios[name] = mk / mi
    per = " ".join(f"{x:.2f}" for x in k) + " | " + " ".join(f"{x:.2f}" for x in i)
    print(f"{name:<7} {mk:>17.3f} s {mi:>8.3f} s {ratios[name]:>7.2f}x    {per}")
print("(medians; ratio = kubectl median / idp-lab median; goal: cold >= 2x, no-op >= 10x)")
print(f"bench apply: cold_ratio={ratios['cold']:.2f} noop_ratio={ratios['no-op']:.2f}")
PY
