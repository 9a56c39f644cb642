#!/usr/bin/env bash
# Benchmark: idp-lab's registry (idp-registry, release build, driven by its `serve`
# example) against CNCF distribution 2.8 (Debian's `docker-registry`), serving the same
# content side by side on loopback.
#
# NOT part of e2e/test.sh or .ci/run: it measures. It fails loudly when a server answers
# wrong bytes or digests.
#
#   usage: e2e/bench/registry.sh
#   env:   ROUNDS=3          rounds per measurement and server (medians are reported)
#          SMALL_BLOBS=200   how many 1 MiB blobs
#          BIG_MB=500        size of the big blob, MiB
#          PARALLEL=8        downloads in flight for the small blobs
#          WRK_SECONDS=5     duration of each manifest run; WRK_CONNECTIONS=16
#          CARGO_TARGET_DIR  (default ~/.cache/idp-lab/target)
#          SERVE_FROM=tar    what idp-registry serves: `tar` (the layout tarred, as the lab
#                            daemon serves a bundle in place) or `dir` (the layout directory)
#          BENCH_KEEP=1      keep the temp directory (layout, distribution's storage, logs)
#
# The content: one image `bench/big:1` whose layers are one BIG_MB MiB blob and
# SMALL_BLOBS blobs of 1 MiB (random bytes), and one image `bench/small:1` with a
# 2-layer manifest of ~0.5 KB. idp-registry serves an OCI image layout written here
# (ref names `docker.io/bench/big:1`, `docker.io/bench/small:1`); distribution gets the
# same blobs and manifests pushed through its API, so both answer the same digests.
#
# What is measured, the two servers alternating round by round (the order alternating
# too), after one untimed warm-up fetch of everything from each (page cache warm):
#   big_blob     one `curl -o /dev/null` of the big blob: MiB/s;
#   small_blobs  all small blobs with one `curl --parallel --parallel-max PARALLEL`: MiB/s;
#   manifests    `wrk -t1 -cWRK_CONNECTIONS -dWRK_SECONDS` on GET /v2/bench/small/manifests/1
#                with Docker's Accept header: requests/s.
#
# Output: the table of medians, and as the last line
#   bench registry: big_blob_ratio=X small_blobs_ratio=Y manifests_ratio=Z
# where a ratio is idp-lab's median over distribution's (above 1: idp-lab is faster).
# The goal is >= 1.5 for each.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
SMALL_BLOBS=${SMALL_BLOBS:-200}
BIG_MB=${BIG_MB:-500}
PARALLEL=${PARALLEL:-8}
WRK_SECONDS=${WRK_SECONDS:-5}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-16}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/idp-lab/target}
SERVE=$CARGO_TARGET_DIR/release/examples/serve
ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

die() { printf '\nbench registry: FAILED: %b\n' "$*" >&2; exit 1; }
log() { printf '%s\n' "$*" >&2; }

for n in "$ROUNDS" "$SMALL_BLOBS" "$BIG_MB" "$PARALLEL" "$WRK_SECONDS" "$WRK_CONNECTIONS"; do
  case $n in '' | *[!0-9]* | 0) die "ROUNDS, SMALL_BLOBS, BIG_MB, PARALLEL, WRK_SECONDS and WRK_CONNECTIONS must be positive integers" ;; esac
done
for tool in docker-registry curl wrk sha256sum python3; do
  command -v "$tool" >/dev/null || die "$tool is needed (apt-get install docker-registry curl wrk coreutils python3; install docker-registry with a policy-rc.d exiting 101 so its service does not start)"
done

log "==> cargo build --release -p idp-registry --example serve"
cargo build --release -p idp-registry --example serve >&2
[ -x "$SERVE" ] || die "no release example at $SERVE"

TMP=$(mktemp -d -t idp-lab-bench-registry.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  if [ "${BENCH_KEEP:-}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_for() { # url pid log
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "the server exited; its log:\n$(tail -20 "$3")"
    sleep 0.1
  done
  die "nothing answers at $1"
}

# ---- the content: blobs in an OCI layout -------------------------------------------
LAYOUT=$TMP/layout
mkdir -p "$LAYOUT/blobs/sha256" "$TMP/gen"
printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"

# add_blob FILE: moves FILE into the layout; prints "sha256:<hex> <size>".
add_blob() {
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$LAYOUT/blobs/sha256/$hex"
  printf 'sha256:%s %s\n' "$hex" "$size"
}
descriptor() { printf '{"mediaType":"%s","digest":"%s","size":%s}' "$1" "$2" "$3"; }

log "==> making ${BIG_MB} MiB + ${SMALL_BLOBS} x 1 MiB of random blobs"
head -c "$((BIG_MB * 1024 * 1024))" /dev/urandom >"$TMP/gen/big"
read -r BIG_DIGEST BIG_SIZE < <(add_blob "$TMP/gen/big")
SMALL_DIGESTS=()
layers=$(descriptor application/vnd.oci.image.layer.v1.tar "$BIG_DIGEST" "$BIG_SIZE")
for i in $(seq 1 "$SMALL_BLOBS"); do
  head -c 1048576 /dev/urandom >"$TMP/gen/small"
  read -r d s < <(add_blob "$TMP/gen/small")
  SMALL_DIGESTS+=("$d")
  layers="$layers,$(descriptor application/vnd.oci.image.layer.v1.tar "$d" "$s")"
done
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$TMP/gen/config"
read -r CONFIG_DIGEST CONFIG_SIZE < <(add_blob "$TMP/gen/config")
printf '{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[%s]}' "$OCI_MANIFEST" \
  "$(descriptor application/vnd.oci.image.config.v1+json "$CONFIG_DIGEST" "$CONFIG_SIZE")" "$layers" >"$TMP/gen/big-manifest"
cp "$TMP/gen/big-manifest" "$TMP/big-manifest.json"
read -r BIG_MANIFEST BIG_MANIFEST_SIZE < <(add_blob "$TMP/gen/big-manifest")
printf '{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[%s,%s]}' "$OCI_MANIFEST" \
  "$(descriptor application/vnd.oci.image.config.v1+json "$CONFIG_DIGEST" "$CONFIG_SIZE")" \
  "$(descriptor application/vnd.oci.image.layer.v1.tar "${SMALL_DIGESTS[0]}" 1048576)" \
  "$(descriptor application/vnd.oci.image.layer.v1.tar "${SMALL_DIGESTS[1]}" 1048576)" >"$TMP/gen/small-manifest"
cp "$TMP/gen/small-manifest" "$TMP/small-manifest.json"
read -r SMALL_MANIFEST SMALL_MANIFEST_SIZE < <(add_blob "$TMP/gen/small-manifest")
ref() { printf '{"org.opencontainers.image.ref.name":"%s"}' "$1"; }
printf '{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":"%s","size":%s,"annotations":%s},{"mediaType":"%s","digest":"%s","size":%s,"annotations":%s}]}' \
  "$OCI_MANIFEST" "$BIG_MANIFEST" "$BIG_MANIFEST_SIZE" "$(ref docker.io/bench/big:1)" \
  "$OCI_MANIFEST" "$SMALL_MANIFEST" "$SMALL_MANIFEST_SIZE" "$(ref docker.io/bench/small:1)" >"$LAYOUT/index.json"

# ---- the servers --------------------------------------------------------------------
OURS_PORT=$(free_port)
SERVE_FROM=${SERVE_FROM:-tar}
case $SERVE_FROM in
  tar) tar -cf "$TMP/bundle.tar" -C "$LAYOUT" . && SOURCE=$TMP/bundle.tar ;;
  dir) SOURCE=$LAYOUT ;;
  *) die "SERVE_FROM must be tar or dir, not $SERVE_FROM" ;;
esac
log "idp-registry serves the layout as a $SERVE_FROM"
"$SERVE" "$SOURCE" "$OURS_PORT" "$TMP/local" >"$TMP/ours.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$OURS_PORT/v2/" "${PIDS[-1]}" "$TMP/ours.log"

DIST_PORT=$(free_port)
cat >"$TMP/distribution.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/distribution
http:
  addr: 127.0.0.1:$DIST_PORT
EOF
docker-registry serve "$TMP/distribution.yml" >"$TMP/distribution.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$DIST_PORT/v2/" "${PIDS[-1]}" "$TMP/distribution.log"
log "==> idp-registry on :$OURS_PORT, distribution $(docker-registry --version | awk '{print $3}') on :$DIST_PORT"

OURS=http://127.0.0.1:$OURS_PORT
DIST=http://127.0.0.1:$DIST_PORT

# push_blob REPO DIGEST: POST then PUT of the layout's blob to distribution.
push_blob() {
  local location
  location=$(curl -fsS -D - -o /dev/null -X POST "$DIST/v2/$1/blobs/uploads/" | awk -F': ' 'tolower($1)=="location"{print $2}' | tr -d '\r')
  [ -n "$location" ] || die "distribution gave no upload location"
  curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$LAYOUT/blobs/sha256/${2#sha256:}" "$location&digest=$2"
}
push_manifest() { # REPO FILE
  curl -fsS -o /dev/null -X PUT -H "Content-Type: $OCI_MANIFEST" --data-binary "@$2" "$DIST/v2/$1/manifests/1"
}
log "==> pushing the same content into distribution"
push_blob bench/big "$BIG_DIGEST"
push_blob bench/big "$CONFIG_DIGEST"
for d in "${SMALL_DIGESTS[@]}"; do push_blob bench/big "$d"; done
push_manifest bench/big "$TMP/big-manifest.json"
push_blob bench/small "$CONFIG_DIGEST"
push_blob bench/small "${SMALL_DIGESTS[0]}"
push_blob bench/small "${SMALL_DIGESTS[1]}"
push_manifest bench/small "$TMP/small-manifest.json"

# ---- checks, which also warm the page cache ----------------------------------------
for base in "$OURS" "$DIST"; do
  for repo in big small; do
    want=$([ $repo = big ] && echo "$BIG_MANIFEST" || echo "$SMALL_MANIFEST")
    got=$(curl -fsS -o /dev/null -D - -H "Accept: $ACCEPT" "$base/v2/bench/$repo/manifests/1" | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}' | tr -d '\r')
    [ "$got" = "$want" ] || die "$base: bench/$repo:1 is $got, not $want"
  done
  got=$(curl -fsS "$base/v2/bench/big/blobs/$BIG_DIGEST" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$BIG_DIGEST" ] || die "$base served the big blob with the wrong bytes"
done
: >"$TMP/small-urls-ours"
: >"$TMP/small-urls-dist"
for d in "${SMALL_DIGESTS[@]}"; do
  printf 'url = "%s/v2/bench/big/blobs/%s"\noutput = "/dev/null"\n' "$OURS" "$d" >>"$TMP/small-urls-ours"
  printf 'url = "%s/v2/bench/big/blobs/%s"\noutput = "/dev/null"\n' "$DIST" "$d" >>"$TMP/small-urls-dist"
done
for who in ours dist; do
  curl -fsS --no-progress-meter --parallel --parallel-max "$PARALLEL" -K "$TMP/small-urls-$who" || die "$who: a small blob failed"
done

# ---- the measurements ---------------------------------------------------------------
now() { date +%s.%N; }
big_blob() { # BASE -> MiB/s
  curl -fsS -o /dev/null -w '%{size_download} %{time_total}\n' "$1/v2/bench/big/blobs/$BIG_DIGEST" |
    awk -v want="$BIG_SIZE" '$1 != want { exit 1 } { printf "%.1f\n", $1 / 1048576 / $2 }' || die "$1: short big blob"
}
small_blobs() { # WHO -> MiB/s
  local t0 t1
  t0=$(now)
  curl -fsS --no-progress-meter --parallel --parallel-max "$PARALLEL" -K "$TMP/small-urls-$1" || die "$1: a small blob failed"
  t1=$(now)
  awk -v n="$SMALL_BLOBS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", n / (b - a) }'
}
manifests() { # BASE -> requests/s
  local out
  out=$(wrk -t1 -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" -H "Accept: $ACCEPT" "$1/v2/bench/small/manifests/1")
  if grep -q 'Non-2xx' <<<"$out"; then die "$1: wrk saw errors:\n$out"; fi
  awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }' <<<"$out"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A RESULTS
for metric in big_blob small_blobs manifests; do
  for round in $(seq 1 "$ROUNDS"); do
    order=(ours dist)
    [ $((round % 2)) = 0 ] && order=(dist ours)
    for who in "${order[@]}"; do
      base=$([ "$who" = ours ] && echo "$OURS" || echo "$DIST")
      case $metric in
        big_blob) v=$(big_blob "$base") ;;
        small_blobs) v=$(small_blobs "$who") ;;
        manifests) v=$(manifests "$base") ;;
      esac
      log "$metric round $round $who: $v"
      RESULTS[$metric.$who]="${RESULTS[$metric.$who]:-} $v"
    done
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'; }
printf 'registry benchmark: %s MiB blob, %s x 1 MiB blobs (%s in flight), manifests with wrk -c%s for %ss; %s round(s), %s core(s)\n' \
  "$BIG_MB" "$SMALL_BLOBS" "$PARALLEL" "$WRK_CONNECTIONS" "$WRK_SECONDS" "$ROUNDS" "$(nproc)"
printf '%-12s %16s %16s %8s   %s\n' metric distribution idp-lab ratio "rounds distribution | idp-lab"
declare -A RATIO
for metric in big_blob small_blobs manifests; do
  unit=$([ $metric = manifests ] && echo "req/s" || echo "MiB/s")
  d=$(tr ' ' '\n' <<<"${RESULTS[$metric.dist]}" | grep . | median)
  o=$(tr ' ' '\n' <<<"${RESULTS[$metric.ours]}" | grep . | median)
  RATIO[$metric]=$(ratio "$o" "$d")
  printf '%-12s %10s %-5s %10s %-5s %7sx   %s |%s\n' "$metric" "$d" "$unit" "$o" "$unit" "${RATIO[$metric]}" "${RESULTS[$metric.dist]}" "${RESULTS[$metric.ours]}"
done
printf '(medians; ratio = idp-lab / distribution; goal: >= 1.5x each)\n'
printf 'bench registry: big_blob_ratio=%s small_blobs_ratio=%s manifests_ratio=%s\n' "${RATIO[big_blob]}" "${RATIO[small_blobs]}" "${RATIO[manifests]}"
