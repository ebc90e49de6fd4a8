#!/usr/bin/env bash
# Fetch everything from Debian (apt-get source / apt-get download + dpkg -x, private
# apt config, nothing installed system-wide) and build kube-apiserver,
# kube-controller-manager, kube-scheduler and kubelet from Debian's `kubernetes`
# source package. Results are cached under $CACHE; prints the cache entry dir.
#
#   $CACHE/apt/                 private apt config, sources, lists, archives
#   $CACHE/runtime-<hash>/      unpacked etcd, containerd, runc, CNI plugins, busybox
#   $CACHE/k8s-<srcver>-go<gover>-p<hash>/bin/   the 4 built binaries (+ pause)
#   $CACHE/current              name of the last complete entry (used without apt on later runs)
#
# FIBER_K8S_REFRESH=1 ignores `current` and asks apt again (rebuilds only if a version changed).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mkdir -p "$CACHE"

if [[ -z "${FIBER_K8S_REFRESH:-}" && -f "$CACHE/current" ]]; then
  entry="$CACHE/$(cat "$CACHE/current")"
  if [[ -f "$entry/complete" && -f "$entry/runtime" && -f "$(cat "$entry/runtime")/complete" ]]; then
    echo "$entry"; exit 0
  fi
fi

# ---------------------------------------------------------------- private apt
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/sources.list.d" "$APT/prefs.d" "$APT/debs"
# deb + deb-src entries derived from the machine's own apt configuration, restricted to
# the suites of this Debian release (third-party repos are left out).
. /etc/os-release
CODENAME="${VERSION_CODENAME:?cannot tell the Debian codename from /etc/os-release}"
python3 - "$CODENAME" > "$APT/sources.list.d/derived.sources" <<'PY'
import glob, os, re, sys
codename = sys.argv[1]
ok = lambda s: s == codename or s.startswith(codename + "-")
out = []
def emit(uris, suites, comps, signed):
    suites = [s for s in suites if ok(s)]
    if not suites or not uris:
        return
    e = ["Types: deb deb-src", "URIs: " + " ".join(uris), "Suites: " + " ".join(suites),
         "Components: " + " ".join(comps or ["main"])]
    if signed:
        e.append("Signed-By: " + signed)
    out.append("\n".join(e))
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for para in re.split(r"\n\s*\n", open(f).read()):
        kv = {}
        for line in para.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            k, v = line.split(":", 1)
            kv[k.strip().lower()] = v.strip()
        if kv.get("enabled", "yes").lower() == "no" or "deb" not in kv.get("types", "").split():
            continue
        emit(kv.get("uris", "").split(), kv.get("suites", "").split(),
             kv.get("components", "").split(), kv.get("signed-by"))
for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    if not os.path.exists(f):
        continue
    for line in open(f):
        line = line.split("#", 1)[0].split()
        if not line or line[0] != "deb":
            continue
        signed = None
        if line[1].startswith("["):
            opts = []
            while not line[1].endswith("]"):
                opts.append(line.pop(1))
            opts.append(line.pop(1))
            m = re.search(r"signed-by=([^\s\]]+)", " ".join(opts))
            signed = m.group(1) if m else None
        emit([line[1]], [line[2]], line[3:], signed)
if not out:
    sys.exit("no Debian %s entries found in the machine's apt sources" % codename)
print("\n\n".join(out))
PY
cat > "$APT/apt.conf" <<EOC
Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "$APT/sources.list.d";
Dir::Etc::preferencesparts "$APT/prefs.d";
Dir::State::lists "$APT/lists";
Dir::Cache "$APT";
Dir::Cache::archives "$APT/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Get::Download-Only-Source "false";
Acquire::Languages "none";
APT::Sandbox::User "root";
EOC
export APT_CONFIG="$APT/apt.conf"
log "private apt-get update"
apt-get -q update >"$APT/update.log" 2>&1 || { cat "$APT/update.log" >&2; die "apt-get update (private config $APT_CONFIG) failed"; }
grep -E '^(W|E):' "$APT/update.log" >&2 || true

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
srcversion() { apt-cache showsrc "$1" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | tail -1; }
need_pkg() {
  local v; v="$(candidate "$1")"
  [[ -n "$v" && "$v" != "(none)" ]] || die "Debian package '$1' is not available from the mirror (apt sources: $APT/sources.list.d/derived.sources). Provisioning cannot continue."
  echo "$v"
}
fetch_unpack() {  # fetch_unpack PREFIX PKG...  (apt-get download + dpkg -x)
  local prefix="$1"; shift
  mkdir -p "$prefix"
  for p in "$@"; do need_pkg "$p" >/dev/null; done
  ( cd "$APT/debs" && apt-get -q download "$@" >>"$APT/download.log" 2>&1 ) \
    || { tail -20 "$APT/download.log" >&2; die "apt-get download $* failed (see $APT/download.log)"; }
  for p in "$@"; do
    local deb; deb="$(ls -t "$APT/debs/${p}_"*.deb | head -1)"
    dpkg -x "$deb" "$prefix"
  done
}

# ---------------------------------------------------------------- runtime debs
rt_versions=""
for p in $RUNTIME_PKGS; do rt_versions+="$p=$(need_pkg "$p") "; done
rt_hash="$(echo "$rt_versions" | sha256sum | cut -c1-12)"
RT="$CACHE/runtime-$rt_hash"
if [[ ! -f "$RT/complete" ]]; then
  log "downloading + unpacking runtime: $rt_versions"
  rm -rf "$RT"; fetch_unpack "$RT" $RUNTIME_PKGS
  echo "$rt_versions" > "$RT/versions"; touch "$RT/complete"
fi

# ---------------------------------------------------------------- kubernetes build
SRC_VER="$(srcversion "$K8S_SRC_PKG")"
[[ -n "$SRC_VER" ]] || die "Debian source package '$K8S_SRC_PKG' not found (deb-src entries: $APT/sources.list.d/derived.sources)"
GO_VER="$(need_pkg "$GO_VERSION_PKG")"
R2_VER="$(need_pkg golang-github-modern-go-reflect2-dev)"
# patch set: the reflect2 replacement (by version) + this script's build recipe
PATCH_HASH="$(printf 'reflect2=%s\n' "$R2_VER" | cat - "$HERE/patch-set.txt" | sha256sum | cut -c1-12)"
KEY="k8s-${SRC_VER//[:+~]/_}-go${GO_VER//[:+~]/_}-p$PATCH_HASH"
ENTRY="$CACHE/$KEY"
if [[ ! -f "$ENTRY/complete" ]]; then
  BUILD="$CACHE/build"
  rm -rf "$BUILD"; mkdir -p "$BUILD"
  log "fetching Go ($GO_VER), rsync, reflect2 ($R2_VER)"
  fetch_unpack "$BUILD/prefix" $GO_PKGS $BUILD_PKGS
  log "apt-get source $K8S_SRC_PKG ($SRC_VER)"
  ( cd "$BUILD" && apt-get -q source --download-only "$K8S_SRC_PKG=$SRC_VER" >"$BUILD/source.log" 2>&1 ) \
    || { tail -20 "$BUILD/source.log" >&2; die "apt-get source $K8S_SRC_PKG=$SRC_VER failed"; }
  dsc="$(ls "$BUILD"/*.dsc | head -1)"
  if command -v dpkg-source >/dev/null; then
    ( cd "$BUILD" && dpkg-source -x "$dsc" src >"$BUILD/unpack.log" 2>&1 ) || die "dpkg-source -x failed (see $BUILD/unpack.log)"
  else
    # no dpkg-dev: the upstream tarball is enough (Debian's 3 patches only touch kubectl)
    mkdir -p "$BUILD/src"; tar -xf "$(ls "$BUILD"/*.orig.tar.* | head -1)" -C "$BUILD/src" --strip-components=1
  fi
  SRC="$BUILD/src"
  # patch 1 (see patch-set.txt): vendored reflect2 1.0.1 -> Debian's 1.0.2 (Go >= 1.18 mapiterinit)
  R2="$(find "$BUILD/prefix/usr/share/gocode/src" -type d -path '*modern-go/reflect2' | head -1)"
  [[ -n "$R2" ]] || die "reflect2 sources not found in golang-github-modern-go-reflect2-dev"
  rm -f "$SRC/vendor/github.com/modern-go/reflect2/"*.go "$SRC/vendor/github.com/modern-go/reflect2/"*.s
  cp "$R2"/*.go "$SRC/vendor/github.com/modern-go/reflect2/"
  ls "$R2"/*.s >/dev/null 2>&1 && cp "$R2"/*.s "$SRC/vendor/github.com/modern-go/reflect2/"
  rm -f "$SRC/vendor/github.com/modern-go/reflect2/"*_test.go
  GOBIN_DIR="$(dirname "$(find "$BUILD/prefix/usr/lib" -path '*/bin/go' -type f | head -1)")"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet (about 5 min on 2 cores)"
  mkdir -p "$BUILD/home" "$BUILD/tmp"
  t0=$SECONDS
  ( cd "$SRC" && env -i PATH="$GOBIN_DIR:$BUILD/prefix/usr/bin:/usr/bin:/bin" HOME="$BUILD/home" TMPDIR="$BUILD/tmp" \
      CGO_ENABLED=0 KUBE_VERBOSE=1 \
      make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet" ) >"$BUILD/build.log" 2>&1 \
    || { tail -40 "$BUILD/build.log" >&2; die "kubernetes build failed (full log: $BUILD/build.log)"; }
  log "build took $((SECONDS - t0)) s"
  rm -rf "$ENTRY.tmp"; mkdir -p "$ENTRY.tmp/bin"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    cp "$SRC/_output/bin/$b" "$ENTRY.tmp/bin/"
  done
  # pause binary for the sandbox image, from the tarball's own source
  gcc -Os -static -o "$ENTRY.tmp/bin/pause" "$SRC/build/pause/linux/pause.c" 2>"$BUILD/pause.log" \
    || { cat "$BUILD/pause.log" >&2; die "gcc -static pause.c failed"; }
  printf 'source=%s\ngo=%s\nreflect2=%s\n' "$SRC_VER" "$GO_VER" "$R2_VER" > "$ENTRY.tmp/versions"
  rm -rf "$ENTRY"; mv "$ENTRY.tmp" "$ENTRY"
  [[ -n "${FIBER_K8S_KEEP_BUILD:-}" ]] || rm -rf "$BUILD"
fi
echo "$RT" > "$ENTRY/runtime"
touch "$ENTRY/complete"
echo "$KEY" > "$CACHE/current"
echo "$ENTRY"
