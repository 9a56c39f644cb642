#!/usr/bin/env bash
# Builds the stand-in k3s node image idp-lab/testnode:<tag> for the test bed:
# a rootfs with /bin/k3s (the idp-testnode crate), etcd, kube-apiserver,
# kube-controller-manager and kubectl (from the test-bed cache) and the shared
# libraries they need, and a static busybox as /bin/sh, mount, cat, ... (like
# the busybox tools of rancher/k3s), imported with `docker import` (no base
# image, no pull).
# The image declares what rancher/k3s declares: ENTRYPOINT ["/bin/k3s"],
# CMD ["agent"], and VOLUMEs /var/lib/kubelet /var/lib/rancher/k3s /var/lib/cni
# /var/log.
#
# Tag: v1.20.2-<first 12 hex of a sha256 over the inputs: this script, the
# stand-in binary, the kube binaries, busybox and the copied libraries>. An existing
# tag is reused at once; any changed input gives a new tag.
#
#   usage: testnode-image.sh [--release] [--print-tag]
#     --release    build the stand-in with `cargo build --release` (default: debug)
#     --print-tag  only print the image reference it would build (the stand-in
#                  is still compiled if out of date, since the tag hashes it)
#
# stdout: the image reference (idp-lab/testnode:v1.20.2-...) as the last line;
# everything else goes to stderr. Needs: a running Docker daemon, cargo, the
# binaries from install.sh in ${IDP_LAB_TESTBED:-~/.cache/idp-lab-testbed}/bin,
# and a statically linked busybox (Debian's busybox-static, which install.sh
# installs; IDP_LAB_BUSYBOX names another one).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
TESTBED=${IDP_LAB_TESTBED:-$HOME/.cache/idp-lab-testbed}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/idp-lab/target}
REPO=idp-lab/testnode
K8S_VERSION=v1.20.2

log() { echo "testnode-image.sh: $*" >&2; }
die() { echo "testnode-image.sh: error: $*" >&2; exit 1; }

PROFILE=debug
CARGO_PROFILE=()
PRINT_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --release) PROFILE=release; CARGO_PROFILE=(--release) ;;
    --print-tag) PRINT_ONLY=1 ;;
    -h|--help) sed -n '2,25p' "$SELF" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument $arg (see --help)" ;;
  esac
done

# --- inputs -------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found"
log "building the stand-in (cargo build -p idp-testnode${CARGO_PROFILE:+ ${CARGO_PROFILE[*]}}, target dir $TARGET)"
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" nice cargo build -q -p idp-testnode "${CARGO_PROFILE[@]}") >&2 \
  || die "cargo build -p idp-testnode failed"
K3S_BIN="$TARGET/$PROFILE/k3s"
[ -x "$K3S_BIN" ] || die "stand-in binary missing at $K3S_BIN"

KUBE_BINS=(etcd kube-apiserver kube-controller-manager kubectl)
for b in "${KUBE_BINS[@]}"; do
  [ -x "$TESTBED/bin/$b" ] || die "$TESTBED/bin/$b missing: run e2e/testbed/install.sh first"
done

# busybox must be static: the image has no libc of its own for it.
BUSYBOX=${IDP_LAB_BUSYBOX:-$(command -v busybox || echo /bin/busybox)}
[ -x "$BUSYBOX" ] || die "busybox missing at $BUSYBOX: run e2e/testbed/install.sh (Debian package busybox-static)"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked: install Debian's busybox-static (install.sh does) or set IDP_LAB_BUSYBOX"
fi
# Applets linked in /bin: what node entrypoints and `docker exec` checks use
# (rancher/k3s ships more).
BUSYBOX_APPLETS=(sh ash mount umount cat ls mkdir rm rmdir cp mv ln chmod chown echo printf sleep
  grep sed awk tar head tail wc cut tr sort uniq tee test '[' true false env touch find xargs
  dirname basename readlink stat id uname date df du ps kill mktemp sync)
BUSYBOX_HAS=$("$BUSYBOX" --list)
for a in "${BUSYBOX_APPLETS[@]}"; do
  grep -qxF -- "$a" <<<"$BUSYBOX_HAS" || die "$BUSYBOX has no applet $a"
done

# Shared libraries (and the dynamic loader) of every binary, by absolute path.
mapfile -t LIBS < <(
  for f in "$K3S_BIN" "${KUBE_BINS[@]/#/$TESTBED/bin/}"; do
    ldd "$f" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' || true
  done | sort -u
)

# Hash over logical names and contents (not host paths, so the tag is stable
# across target/cache directories).
INPUTS_SHA=$(
  {
    printf 'script %s\n' "$(sha256sum < "$SELF" | cut -d' ' -f1)"
    printf 'k3s %s\n' "$(sha256sum < "$K3S_BIN" | cut -d' ' -f1)"
    for b in "${KUBE_BINS[@]}"; do
      printf '%s %s\n' "$b" "$(sha256sum < "$TESTBED/bin/$b" | cut -d' ' -f1)"
    done
    printf 'busybox %s\n' "$(sha256sum < "$BUSYBOX" | cut -d' ' -f1)"
    for l in "${LIBS[@]}"; do
      printf '%s %s\n' "$l" "$(sha256sum < "$l" | cut -d' ' -f1)"
    done
  } | sha256sum | cut -d' ' -f1
)
TAG="$K8S_VERSION-${INPUTS_SHA:0:12}"
REF="$REPO:$TAG"

if [ "$PRINT_ONLY" = 1 ]; then
  echo "$REF"
  exit 0
fi

# --- image --------------------------------------------------------------------
command -v docker >/dev/null || die "docker CLI not found: run e2e/testbed/install.sh first"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "no Docker daemon answers: run e2e/testbed/install.sh first"

mkdir -p "$TESTBED"
exec 9>"$TESTBED/.testnode-image.lock"
flock 9
if docker image inspect "$REF" >/dev/null 2>&1; then
  log "$REF is up to date"
  echo "$REF"
  exit 0
fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/idp-testnode-image.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
R="$STAGE/rootfs"
log "assembling the rootfs in $R"
mkdir -p "$R"/{bin,etc/rancher/k3s,root,run,tmp,output,usr/libexec/idp-testnode} \
  "$R"/var/{run,log,lib/kubelet,lib/cni} \
  "$R"/var/lib/rancher/k3s/{server/manifests,agent/images}
chmod 1777 "$R/tmp"
chmod 700 "$R/root"

install -m 0755 "$K3S_BIN" "$R/bin/k3s"
ln -s k3s "$R/bin/kubectl"          # multi-call like rancher/k3s: kubectl -> k3s
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
for a in "${BUSYBOX_APPLETS[@]}"; do
  ln -s busybox "$R/bin/$a"
done
for b in "${KUBE_BINS[@]}"; do
  install -m 0755 "$TESTBED/bin/$b" "$R/usr/libexec/idp-testnode/$b"
done
for l in "${LIBS[@]}"; do
  mkdir -p "$R$(dirname "$l")"
  cp -L "$l" "$R$l"
done

cat > "$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat > "$R/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat > "$R/etc/nsswitch.conf" <<'EOF'
passwd:    files
group:     files
shadow:    files
hosts:     files dns
networks:  files
protocols: files
services:  files
EOF
cat > "$R/etc/os-release" <<EOF
NAME="idp-testnode"
ID=idp-testnode
VERSION_ID="$K8S_VERSION"
PRETTY_NAME="idp-testnode (k3s stand-in, Kubernetes $K8S_VERSION, no kubelet)"
EOF
: > "$R/etc/hosts"; : > "$R/etc/resolv.conf"; : > "$R/etc/hostname"

log "importing $REF"
tar --numeric-owner --owner=0 --group=0 -C "$R" -cf - . \
  | docker import \
      --message "idp-lab test-bed node (stand-in for rancher/k3s), inputs sha256:$INPUTS_SHA" \
      --change 'ENTRYPOINT ["/bin/k3s"]' \
      --change 'CMD ["agent"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bin/aux' \
      --change 'ENV CRI_CONFIG_FILE=/var/lib/rancher/k3s/agent/etc/crictl.yaml' \
      --change 'VOLUME ["/var/lib/kubelet", "/var/lib/rancher/k3s", "/var/lib/cni", "/var/log"]' \
      --change 'LABEL org.opencontainers.image.title=idp-lab-testnode' \
      --change "LABEL org.opencontainers.image.version=$K8S_VERSION+idp-testnode" \
      --change "LABEL dev.idp-lab.testnode.inputs=sha256:$INPUTS_SHA" \
      - "$REF" >&2 \
  || die "docker import failed"
log "built $REF ($(docker image inspect --format '{{.Size}}' "$REF" | awk '{ printf "%d MB", $1 / 1000000 }'))"
# Drop older stand-in images that no container uses (no force: in-use ones stay).
docker image ls --filter label=org.opencontainers.image.title=idp-lab-testnode --format '{{.Repository}}:{{.Tag}}' \
  | grep -vxF "$REF" | grep -v ':<none>$' | while read -r old; do
      docker image rm "$old" >/dev/null 2>&1 && log "removed unused older image $old"
    done || true
echo "$REF"
