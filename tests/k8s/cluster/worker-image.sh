#!/usr/bin/env bash
# Build the fiber_jupyter worker image without any registry or image builder,
# following docker/worker.Dockerfile: Debian bookworm (python3 = 3.11, as the
# Dockerfile's PYTHON default) via debootstrap (apt-get download + dpkg -x, not
# installed), `pip install` of this checkout into it, user `worker` (uid 1000),
# WORKDIR /home/worker, CMD python -m fiber_jupyter.worker --help.
# Output: $CACHE/worker-image/fiber-worker.tar (OCI layout, name fiber-worker:test),
# cached by a hash of the sources; imported into a running cluster's containerd
# (namespace k8s.io) right away, and by up.sh on later runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(id -u) == 0 ]] || die "worker-image.sh needs root (debootstrap, chroot)"
REPO="$(cd "$HERE/../../.." && pwd)"
PY="${PYTHON:-python3}"
W="$CACHE/worker-image"; mkdir -p "$W"
key="$( (cd "$REPO" && cat docker/worker.Dockerfile setup.py README.md && find fiber_jupyter -type f -name '*.py' | sort | xargs cat; echo "$HERE/worker-image.sh"; cat "$HERE/worker-image.sh") | sha256sum | cut -c1-16)"
if [[ ! -f "$W/fiber-worker.tar" || "$(cat "$W/key" 2>/dev/null)" != "$key" ]]; then
  T0=$SECONDS
  APT="$CACHE/apt"; [[ -f "$APT/apt.conf" ]] || die "run provision.sh (or up.sh) first: private apt config missing"
  export APT_CONFIG="$APT/apt.conf"
  mkdir -p "$W/tools"
  ( cd "$APT/debs" && apt-get -q download debootstrap >/dev/null ) || die "apt-get download debootstrap failed (not on the mirror?)"
  dpkg -x "$(ls -t "$APT/debs"/debootstrap_*.deb | head -1)" "$W/tools"
  . /etc/os-release
  MIRROR="$(awk '/^URIs:/ {print $2; exit}' "$APT/sources.list.d/derived.sources")"
  [[ -n "$MIRROR" ]] || die "no Debian mirror found in the machine's apt sources"
  ROOT="$W/rootfs"
  cleanup() { for m in proc sys dev/pts dev; do umount "$ROOT/$m" 2>/dev/null || true; done; }
  trap cleanup EXIT
  cleanup; rm -rf "$ROOT"
  log "debootstrap $VERSION_CODENAME (minbase + python3) from the machine's own mirror"
  DEBOOTSTRAP_DIR="$W/tools/usr/share/debootstrap" "$W/tools/usr/sbin/debootstrap" --variant=minbase \
      --include=python3,ca-certificates --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
      "$VERSION_CODENAME" "$ROOT" "$MIRROR" >"$W/debootstrap.log" 2>&1 \
    || { tail -20 "$W/debootstrap.log" >&2; die "debootstrap failed (log: $W/debootstrap.log)"; }
  cleanup
  IPY="$(chroot "$ROOT" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  HPY="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  DPY="$(awk -F= '/^ARG PYTHON=/ {print $2}' "$REPO/docker/worker.Dockerfile")"
  [[ "$IPY" == "$DPY" ]] || log "WARNING: Debian's python3 is $IPY, docker/worker.Dockerfile defaults to $DPY"
  [[ "$IPY" == "$HPY" ]] || die "pip needs a host Python $IPY to install into the image (PYTHON=$PY is $HPY)"
  # RUN pip install /src  -- done by the host's pip (same Python minor) into the image's /usr/local
  log "pip install $REPO into the image"
  SRC="$(mktemp -d)"; cp "$REPO/setup.py" "$REPO/README.md" "$SRC/"; cp -r "$REPO/fiber_jupyter" "$SRC/"
  find "$SRC" -name __pycache__ -prune -exec rm -rf {} +
  "$PY" -m pip install -q --no-cache-dir --target "$ROOT/usr/local/lib/python$IPY/dist-packages" "$SRC" >"$W/pip.log" 2>&1 \
    || { tail -20 "$W/pip.log" >&2; die "pip install into the image failed (log: $W/pip.log)"; }
  rm -rf "$SRC"
  mv "$ROOT/usr/local/lib/python$IPY/dist-packages/bin/"* "$ROOT/usr/local/bin/" 2>/dev/null || true
  chroot "$ROOT" python3 -c 'import fiber_jupyter.worker' || die "fiber_jupyter.worker does not import inside the image"
  # RUN useradd --create-home --uid 1000 worker
  chroot "$ROOT" useradd --create-home --uid 1000 worker
  ln -sf python3 "$ROOT/usr/bin/python"   # the Dockerfile's CMD says `python`
  rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
  python3 "$HERE/oci_image.py" --rootfs "$ROOT" --name docker.io/library/fiber-worker:test \
    --user worker --workdir /home/worker --cmd '["python", "-m", "fiber_jupyter.worker", "--help"]' --out "$W/fiber-worker.tar"
  rm -rf "$ROOT"
  echo "$key" > "$W/key"
  log "worker image built in $((SECONDS - T0)) s: $W/fiber-worker.tar ($(du -h "$W/fiber-worker.tar" | cut -f1))"
fi
C="$STATE/containerd"
if [[ -S "$C/containerd.sock" ]]; then
  RT="$(cat "$CACHE/$(cat "$CACHE/current")/runtime")"
  "$RT/usr/bin/ctr" --address "$C/containerd.sock" -n k8s.io images import "$W/fiber-worker.tar" >/dev/null \
    || die "ctr images import failed"
  log "imported fiber-worker:test into the running cluster"
fi
