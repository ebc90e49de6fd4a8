#!/usr/bin/env bash
# The real-cluster tier: bring the cluster up (building it on first use), build and
# import the worker image, run every test marked real_cluster against it, bring it
# down whatever happened. Extra arguments go to pytest. Needs root, like up.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
PYTHON="${PYTHON:-$root/.venv/bin/python}"
phase() { echo "tier: $1 after ${SECONDS} s" >&2; }

[[ "$(id -u)" == 0 ]] || { echo "FATAL: the real-cluster tier needs root (it runs containerd and a kubelet)" >&2; exit 1; }
trap '"$here/down.sh"; phase "down"' EXIT
kubeconfig="$("$here/up.sh" | tail -1)"
phase "cluster up"
PYTHON="$PYTHON" "$here/worker-image.sh" >&2
phase "worker image ready"
cd "$root"
FIBER_JUPYTER_TEST_KUBECONFIG="$kubeconfig" FIBER_JUPYTER_TEST_HOST_NETWORK=1 \
  FIBER_JUPYTER_TEST_IMAGE=fiber-worker:test \
  "$PYTHON" -m pytest -m real_cluster tests/k8s "$@"
phase "tests passed"
