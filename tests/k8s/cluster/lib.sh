# Shared settings for up.sh / down.sh / provision.sh (sourced, not run).
# STATE: run-time dir (pids, certs, data, logs). CACHE: built binaries, reused across runs.
STATE="${STATE:-/tmp/fiber-jupyter-k8s}"
CACHE="${FIBER_K8S_CACHE:-$HOME/.cache/fiber-jupyter-k8s}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Debian packages (by name only; versions come from the machine's own apt sources).
K8S_SRC_PKG=kubernetes
GO_PKGS="golang-1.19-go golang-1.19-src"
GO_VERSION_PKG=golang-1.19-go
BUILD_PKGS="rsync golang-github-modern-go-reflect2-dev"
RUNTIME_PKGS="etcd-server containerd runc containernetworking-plugins busybox-static"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '\nFATAL: %s\n\n' "$*" >&2; exit 1; }
